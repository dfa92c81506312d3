"""The producer process of `bench run`: payload pool, the schedule, per-second reports to the
coordinator (bench/core/protocol.py) and the final flush. Sending and delivery accounting are
the shared send path in bench/core/delivery.py.
"""

from __future__ import annotations

import functools
import gc
import signal
import time
import traceback

from bench.core.audit import trace_sample_every
from bench.core.client_stats import STATISTICS_INTERVAL_MS, StatsCollector
from bench.core.clients import describe_error, reconnect_allowance_s, scenario_producer_config
from bench.core.delivery import DeliveryAccount, DrainDeadline, Sender, payload_pool
from bench.core.protocol import BacklogBuilt, ChildFailed, ProducerDone, Ready, producer_name
from bench.core.scenario import Scenario
from bench.core.transactions import Transactions, transactional_id
from streamstore.producer import OrderProducer

NS_PER_S = 1_000_000_000
# Flat out, look at the clock every this many messages (a clock read per message is ~2 %).
CLOCK_CHECK_EVERY = 64
# When librdkafka's queue is full, serve delivery reports this long before retrying.
QUEUE_FULL_POLL_S = 0.05
# A fixed-rate producer ahead of schedule waits in poll() (serving deliveries) when the next
# send is further away than this; closer, it sleeps (poll's timeout has whole-ms resolution).
POLL_WAIT_ABOVE_NS = 2_000_000
# How long producers may take to deliver what is queued when the run is interrupted.
INTERRUPT_DRAIN_S = 2.0
# After a normal run, producers give up on what is queued once this long (or drain_timeout_s if
# longer) passes without a delivery.
MIN_FLUSH_S = 10.0
# Connected within this long, or the run fails.
CHILD_START_TIMEOUT_S = 60.0


class ProducerLoop:
    """One producer process: the schedule, the per-second reports and the final flush around
    the shared send path (bench/core/delivery.py)."""

    def __init__(self, index: int, scenario: Scenario, bootstrap_servers: str, run_id: bytes, reports):
        self.index = index
        self.scenario = scenario
        self.reports = reports
        config = scenario_producer_config(scenario, bootstrap_servers)
        self.reconnect_s = reconnect_allowance_s(config)
        # librdkafka's statistics once a second, in every run: queue depth, retries, batch size and
        # round trip per second beside the run's series; with failures-only reports (no
        # per-message service time) also its per-broker latencies (bench/core/client_stats.py).
        self.client_stats = StatsCollector(scenario.topic, latency_windows=scenario.delivery_reports == "failures")
        config.update({"statistics.interval.ms": STATISTICS_INTERVAL_MS, "stats_cb": self.client_stats.on_stats})
        if scenario.transaction_size:
            add_transactional_settings(config, run_id, index)
        self.producer = OrderProducer(config, scenario.topic)
        client = self.producer.client
        # Metadata now, so the first timed message does not wait for it.
        client.list_topics(scenario.topic, timeout=CHILD_START_TIMEOUT_S / 2)
        # Flat out, service time comes from the traced messages only: a process of its own, so
        # every saving per delivery is throughput (Locust keeps every delivery's, for its stats).
        self.account = DeliveryAccount(scenario, index, service_sample_every=trace_sample_every(scenario),
                                       queued=client.__len__)
        values, keys = payload_pool(scenario)
        # A full queue empties as deliveries are served: serve them, then retry.
        self.sender = Sender(client, scenario, run_id, self.account, values, keys,
                             functools.partial(client.poll, QUEUE_FULL_POLL_S))
        self.transactions = None
        if scenario.transaction_size:
            self.transactions = Transactions(client, scenario.transaction_size, scenario.transaction_abort_ratio,
                                             self.account.transaction_partitions)
            # Registers the id with its coordinator (fencing an older producer with it) before t0.
            self.transactions.init()
        self.second = 0
        self.next_second_ns = 0
        self.stop = None
        self.outage = None

    def report_due(self, now_ns: int) -> bool:
        """Send the report of every second that has ended; True when asked to stop."""
        while now_ns >= self.next_second_ns:
            self.reports.put(self._take_second())
            self.second += 1
            self.next_second_ns += NS_PER_S
        return self.stop.is_set()

    def run(self, t0_ns: int, stop, outage=None, catch_up_ns=None) -> None:
        """outage: an event set while a node the run's faults took down is not answering yet.
        catch_up_ns: with a backlog, the shared perf_counter_ns at which the consumers start and
        the schedule begins, set by the coordinator once every producer's share is built."""
        self.stop, self.outage = stop, outage
        self.next_second_ns = t0_ns + NS_PER_S
        if self.transactions is not None:
            self.transactions.begin(self.sender.sequence)
        start_ns = build_backlog(self, t0_ns, catch_up_ns) if self.scenario.backlog else t0_ns
        if start_ns is not None and self.scenario.rate == 0:  # None: stopped while building the backlog
            self._flat_out(start_ns, start_ns + int(self.scenario.duration_s * NS_PER_S))
        elif start_ns is not None:
            self._scheduled(start_ns)
        self._finish(t0_ns, (time.perf_counter_ns() - t0_ns) / NS_PER_S)

    def _flat_out(self, t0_ns: int, end_ns: int | None, count: int | None = None) -> None:
        """Flat out until end_ns, or (end_ns None) until `count` more messages are sent."""
        send, clock, poll = self.sender.send_flat_out, time.perf_counter_ns, self.producer.client.poll
        transactions, sender = self.transactions, self.sender
        last = None if count is None else sender.sequence + count
        while clock() < t0_ns:
            poll(0.001)
        while True:
            now = clock()
            burst = CLOCK_CHECK_EVERY if last is None else min(CLOCK_CHECK_EVERY, last - sender.sequence)
            if (end_ns is not None and now >= end_ns) or (now >= self.next_second_ns and self.report_due(now)) or burst <= 0:
                return
            if transactions is None:
                send(burst)
                continue
            # A burst never crosses a transaction's end.
            send(min(burst, transactions.remaining(sender.sequence)))
            self._transaction_boundary()

    def _transaction_boundary(self) -> None:
        """Ends the open transaction once it holds transaction_size orders, and begins the next."""
        sequence = self.sender.sequence
        if self.transactions.remaining(sequence) == 0:
            self.transactions.end(sequence)
            self.transactions.begin(sequence)

    def _scheduled(self, t0_ns: int) -> None:
        send, clock, poll = self.sender.send_scheduled, time.perf_counter_ns, self.producer.client.poll
        producers = self.scenario.producers
        phase_start_ns = t0_ns
        for phase in self.scenario.schedule():
            rate = phase.rate / producers
            interval_ns = NS_PER_S / rate
            # Producers interleave their schedules instead of sending in lock-step.
            offset_ns = interval_ns * self.index / producers
            for step in range(round(phase.duration_s * rate)):
                intended_ns = phase_start_ns + int(offset_ns + step * interval_ns)
                now = clock()
                while now < intended_ns:
                    if now >= self.next_second_ns and self.report_due(now):
                        return
                    wait_ns = intended_ns - now
                    if wait_ns > POLL_WAIT_ABOVE_NS:
                        poll((wait_ns - POLL_WAIT_ABOVE_NS // 2) / NS_PER_S)
                    else:
                        poll(0)
                        time.sleep(wait_ns / NS_PER_S)
                    now = clock()
                if now >= self.next_second_ns and self.report_due(now):
                    return
                send(intended_ns)
                if self.transactions is not None:
                    self._transaction_boundary()
            phase_start_ns += int(phase.duration_s * NS_PER_S)

    def _finish(self, t0_ns: int, producing_s: float) -> None:
        """Deliver what is queued (reports keep coming each second), then the final report."""
        client = self.producer.client
        if self.transactions is not None and self.transactions.open:
            self.transactions.end(self.sender.sequence)
        undelivered = flush_queued(client, self.scenario, self.stop, self.outage, self.reconnect_s,
                                   lambda: self.report_due(time.perf_counter_ns()))
        elapsed_s = (time.perf_counter_ns() - t0_ns) / NS_PER_S
        # Acks that stopped and never came back are a gap up to now, not no gap.
        self.account.partition_acks.close()
        self.reports.put(self._take_second())
        account = self.account
        self.reports.put(ProducerDone(self.index, self.sender.sequence, account.acked_total, account.failed_sequences,
                                      producing_s, elapsed_s, account.first_error, undelivered, account.timed_out,
                                      self.transactions.summary() if self.transactions is not None else None))

    def _take_second(self):
        return self.account.take_second(self.second, self.client_stats.take(),
                                        self.transactions.take_commit_us() if self.transactions is not None else None,
                                        self.client_stats.take_figures())


def add_transactional_settings(config: dict, run_id: bytes, index: int) -> None:
    """The settings of a transactional producer process."""
    # One id per producer process and run: a shared id would fence the other process.
    config["transactional.id"] = transactional_id(run_id, index)
    # librdkafka refuses a message timeout longer than the transaction's; the coordinator
    # aborts a transaction open longer than this (the broker allows up to 15 min).
    config.setdefault("transaction.timeout.ms", max(60_000, int(config.get("message.timeout.ms", 0))))


def build_backlog(loop: ProducerLoop, t0_ns: int, catch_up_ns) -> int | None:
    """The loop's share of the backlog flat out (the same bursts as a flat-out run), every message
    of it delivered, then the wait for the catch-up's start (reporting each second meanwhile);
    that start (perf_counter_ns), or None when told to stop first."""
    share = backlog_share(loop.scenario.backlog_messages(), loop.scenario.producers, loop.index)
    loop._flat_out(t0_ns, None, share)
    client, clock = loop.producer.client, time.perf_counter_ns
    while len(client) and not loop.stop.is_set():
        client.flush(0.1)
        loop.report_due(clock())
    if loop.stop.is_set():
        return None
    loop.reports.put(BacklogBuilt(loop.index, loop.sender.sequence))
    while not catch_up_ns.value:
        client.poll(0.05)
        if loop.report_due(clock()):
            return None
    return catch_up_ns.value


def backlog_share(messages: int, producers: int, index: int) -> int:
    """Producer `index`'s part of a backlog of `messages`: equal parts, the first ones one more."""
    return messages // producers + (index < messages % producers)


def producer_main(index: int, scenario: Scenario, bootstrap_servers: str, run_id: bytes,
                   reports, start, t0_ns, stop, outage=None, catch_up_ns=None) -> None:
    # The coordinator owns Ctrl+C: it tells us through `stop` and we drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        loop = ProducerLoop(index, scenario, bootstrap_servers, run_id, reports)
        # Everything built so far (modules, payload pool) lives for the whole run: keep it out
        # of the collector's scans, which otherwise show up as send-delay spikes.
        gc.freeze()
        reports.put(Ready(producer_name(index)))
        start.wait()
        loop.run(t0_ns.value, stop, outage, catch_up_ns)
    except Exception as error:  # one line and its traceback to the coordinator, which ends the run
        reports.put(ChildFailed(producer_name(index), describe_error(error), traceback.format_exc()))


def flush_queued(client, scenario: Scenario, stop, outage, reconnect_s: float, each_wait) -> int:
    """The final flush: deliver what is queued until the deadline, then purge the rest (their
    delivery callbacks fire with a purge error: counted as failed, not lost); how many it purged.
    `each_wait` runs after every 0.1 s of flushing (the per-second reports go on)."""
    interrupted = stop.is_set()
    deadline = _flush_deadline(scenario, interrupted)
    while (queued := len(client)) and not deadline.expired(queued):
        client.flush(0.1)
        each_wait()
        if stop.is_set() and not interrupted:
            # Ctrl+C during a long flush: what is left gets the interrupted run's short wait.
            interrupted, deadline = True, _flush_deadline(scenario, True)
        if outage is not None and outage.is_set() and not interrupted:
            # A restarting broker will take what is queued for it: the flush time counts from
            # when it answers again, plus the reconnect backoff the outage has grown.
            deadline.wait_more(reconnect_s)
    undelivered = len(client)
    if undelivered:
        client.purge()
        client.flush(1.0)
    return undelivered


def _flush_deadline(scenario: Scenario, interrupted: bool) -> DrainDeadline:
    """How long the final flush waits: briefly and fixed when interrupted, else until
    drain_timeout_s (at least MIN_FLUSH_S) passes without a delivery."""
    if interrupted:
        return DrainDeadline(INTERRUPT_DRAIN_S, progress_extends=False)
    return DrainDeadline(max(MIN_FLUSH_S, scenario.drain_timeout_s))
