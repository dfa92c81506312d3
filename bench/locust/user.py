"""A Locust Kafka user that keeps gevent running, with exact HDR latencies merged across workers.

Locust runs every user of a process on one gevent loop, so any confluent-kafka call that waits
(poll(t>0), flush, consume, close, watermark queries) stalls the whole process. Here:

- each worker process has one producer (bench/locust/worker.py), created on test_start (after
  Locust forked it and after the master's options arrived), never at import;
- tasks only call produce(); a full local queue (BufferError) yields with gevent.sleep while
  the one background greenlet serves delivery reports with poll(0);
- every delivery's raw latency is kept by the core's account; each closed second goes into
  Locust's own statistics in bulk (bench/locust/bulk_stats.py; no `request` event per
  delivery) and each report (every 3 s) ships per-second HdrHistograms (µs) with
  `report_to_master`, added up on the master in `worker_report` (bench/locust/master.py);
- the master (or the local runner) starts the measurement core's tracker process once per
  test for end-to-end latency, consumer lag and the lost/duplicate audit, and at test end
  writes the same result folder as `bench run` (kind "locust"), then checks `--check`;
- flat out, as in `bench run`, only every 64th message carries the trace header and the loss
  audit compares acked with consumed offsets; at a fixed rate every message is traced.

`scenarios/orders.py` is the locustfile; `register(events)` wires these hooks to an Events.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import gevent
from locust import LoadTestShape, User, task
from locust.runners import MasterRunner, WorkerRunner

from bench.analysis.thresholds import deprecation_lines, evaluate_limits
from bench.core.runner import prepare_topic
from bench.locust.console import MasterConsole
from bench.locust.master import LOCAL_WORKER, LocustRun, _ms, in_native_thread, logger
from bench.locust.options import add_arguments, parse_load_steps, scenario_from_options, tracked_scenario, validate_options
from bench.locust.worker import FLAT_OUT_BATCH, WorkerProducer, die_with_master, options_bootstrap
from bench.results.metrics import LATENCY_LABELS
from streamstore.errors import EXIT_REGRESSION, EXIT_RUN_FAILED, StreamStoreError


class KafkaOrdersUser(User):
    """Produces orders through its process's producer: flat out, or at --user-rate msg/s."""

    abstract = True

    def on_start(self) -> None:
        self.kafka: WorkerProducer = self.environment.kafka_producer
        self.rate = self.environment.kafka_user_rate
        self.interval_ns = int(1e9 / self.rate) if self.rate else 0
        self.next_send_ns = time.perf_counter_ns()

    @task
    def produce_orders(self) -> None:
        if not self.rate:
            self.kafka.send_flat_out(FLAT_OUT_BATCH)
            gevent.sleep(0)  # let the poll greenlet and the other users run
            return
        # Fixed rate: send what is due by now, each with its intended time, so a user that fell
        # behind shows it as send delay and response time instead of hiding it.
        now = time.perf_counter_ns()
        while self.next_send_ns <= now:
            self.kafka.send(self.next_send_ns)
            self.next_send_ns += self.interval_ns
        gevent.sleep((self.next_send_ns - time.perf_counter_ns()) / 1e9)


class OrderLoadShape(LoadTestShape):
    """-u/-r/-t as usual, or the --load-steps user counts (with -r as the ramp between steps)."""

    use_common_options = True
    load_began = False

    def tick(self):
        environment = self.runner.environment
        if not self.load_began:
            # -t and --load-steps time the load, not the topic and tracker set-up before it
            # (seconds on a busy machine: a 3 s test could end before its first user).
            self.load_began = getattr(environment, "kafka_run", None) is not None
            self.reset_time()
        options = environment.parsed_options
        run_time = self.get_run_time()
        steps = parse_load_steps(options.load_steps)
        spawn_rate = options.spawn_rate or 1
        if steps:
            elapsed = 0.0
            for users, seconds in steps:
                elapsed += seconds
                if run_time < elapsed:
                    return users, spawn_rate
            return None
        if options.run_time and run_time >= options.run_time:
            return None
        return options.num_users or 1, spawn_rate


def register(events) -> None:
    """Wire the Kafka user's hooks to a Locust Events object (the locustfile's `locust.events`)."""
    # report_to_master and worker_report do not pass the environment; init tells us which it is.
    state: dict[str, Any] = {"environment": None, "console": None}

    @events.init_command_line_parser.add_listener
    def on_parser(parser, **_kwargs):
        add_arguments(parser)

    @events.init.add_listener
    def on_init(environment, **_kwargs):
        state["environment"] = environment
        environment.kafka_run = None
        environment.kafka_producer = None
        environment.kafka_exit_code = None
        if isinstance(environment.runner, WorkerRunner):
            die_with_master()
            return  # the master checks the options and sends them with the spawn message
        if state["console"] is None:
            state["console"] = MasterConsole()
        try:
            scenario, _, _ = validate_options(environment.parsed_options)
            in_native_thread(prepare_topic, scenario, options_bootstrap(environment))
        except StreamStoreError as error:
            sys.stderr.write(f"error: {error}\n")
            sys.stderr.flush()
            sys.exit(error.exit_code)  # before any user is spawned
        if environment.web_ui is not None:
            @environment.web_ui.app.route("/kafka")
            def kafka_status():
                run = environment.kafka_run
                return {"status": run.status_line() if run else "no test running"}

    @events.test_start.add_listener
    def on_test_start(environment, **_kwargs):
        options = environment.parsed_options
        if not isinstance(environment.runner, WorkerRunner):
            _console(state, "test_started")
            try:
                scenario, rate, limits = validate_options(options)
                for line in deprecation_lines(limits):
                    logger.warning("warning: %s", line)
                run = LocustRun(environment, scenario, rate, limits)
                run.start()
            except StreamStoreError as error:
                logger.error("error: %s", error)
                _raise_exit_code(environment, error.exit_code)
                gevent.spawn(environment.runner.quit)
                return
            environment.kafka_run = run
            # Workers read these from the options that travel with the spawn message.
            options.kafka_run_id = run.run_id.hex()
            options.kafka_started_at = run.started_at
            options.kafka_user_rate_resolved = rate
        if not isinstance(environment.runner, MasterRunner):
            scenario = scenario_from_options(options)
            index = max(0, getattr(environment.runner, "worker_index", 0))
            environment.kafka_user_rate = options.kafka_user_rate_resolved
            environment.kafka_producer = WorkerProducer(environment, tracked_scenario(scenario, environment.kafka_user_rate),
                                                        bytes.fromhex(options.kafka_run_id),
                                                        options.kafka_started_at, index)

    @events.spawning_complete.add_listener
    def on_spawned(user_count, **_kwargs):
        run = state["environment"].kafka_run
        if run is not None:
            run.peak_users = max(run.peak_users, user_count)

    @events.report_to_master.add_listener
    def on_report_to_master(client_id, data, **_kwargs):
        environment = state["environment"]
        producer = environment.kafka_producer
        if producer is not None:
            data["kafka"] = producer.take_report()
            if data["kafka"]["final"]:
                environment.kafka_producer = None

    @events.worker_report.add_listener
    def on_worker_report(client_id, data, **_kwargs):
        run = state["environment"].kafka_run
        if "kafka" in data:
            _console(state, "worker_reported", client_id)
        if run is not None and "kafka" in data:
            run.add_worker_report(client_id, data["kafka"])

    @events.test_stop.add_listener
    def on_test_stop(environment, **_kwargs):
        if not isinstance(environment.runner, WorkerRunner):
            _console(state, "test_stopped")
        producer = environment.kafka_producer
        if producer is not None and not producer.final:
            undelivered = producer.stop(producer.scenario.drain_timeout_s)
            if undelivered:
                logger.error("error: %d message(s) not delivered when the test stopped", undelivered)
            if environment.kafka_run is not None:  # local runner: no master to report to
                environment.kafka_producer = None
                environment.kafka_run.add_worker_report(LOCAL_WORKER, producer.take_report())
            # A worker's last report (final) goes with its next stats message to the master.
        run = environment.kafka_run
        if run is None:
            return
        try:
            folder, result = run.finish()  # worker reports keep arriving while it waits for them
        except StreamStoreError as error:
            logger.error("error: %s", error)
            _raise_exit_code(environment, error.exit_code)
            return
        finally:
            environment.kafka_run = None
        logger.info("kafka: result written to %s", folder)
        logger.info("kafka: %s", summary_line(result))
        outcomes = evaluate_limits(run.limits, result)
        failures = [outcome for outcome in outcomes if not outcome.met]
        for failure in failures:
            logger.error("check not met: %s", failure.describe())
        if outcomes and not failures and result["status"] != "failed":
            # Silence would leave "were the checks evaluated at all?" open.
            logger.info("kafka: check passed: %s", "; ".join(o.describe() for o in outcomes))
        if result["status"] == "failed":
            logger.error("error: %s", result["failure"])
            _raise_exit_code(environment, EXIT_RUN_FAILED)
        elif failures:
            _raise_exit_code(environment, EXIT_REGRESSION)

    @events.quitting.add_listener
    def on_quitting(environment, **_kwargs):
        _console(state, "quitting")
        if environment.kafka_exit_code is not None:
            environment.process_exit_code = environment.kafka_exit_code


def _console(state: Mapping[str, Any], method: str, *args) -> None:
    """Tell the master's console filters (bench/locust/console.py) what happened, if installed."""
    if state["console"] is not None:
        getattr(state["console"], method)(*args)


def _raise_exit_code(environment, code: int) -> None:
    environment.kafka_exit_code = max(code, environment.kafka_exit_code or 0)


def summary_line(result: Mapping[str, Any]) -> str:
    counts = result["counts"]
    latency = result["latency_us"]
    locust = result["locust"]
    parts = [f"sent {counts['sent']}, acked {counts['acked']}, failed {counts['failed']}"]
    if locust["tracker"]:
        parts.append(f"consumed {counts['consumed']}, lost {counts['lost']}, duplicated {counts['duplicated']}")
    service = latency["service_time"]
    parts.append(f"{LATENCY_LABELS['service_time'][0]} p50 {_ms(service['p50'])} p99 {_ms(service['p99'])} "
                 f"p99.9 {_ms(service['p99_9'])} max {_ms(service['max'])}")
    if "end_to_end" in latency:
        e2e = latency["end_to_end"]
        parts.append(f"{LATENCY_LABELS['end_to_end'][0]} p50 {_ms(e2e['p50'])} p99 {_ms(e2e['p99'])}")
    workers = ", ".join(f"{w['hdr_count']}" for w in locust["workers"].values())
    parts.append(f"HDR total {locust['hdr_total_count']} = workers [{workers}]; Locust requests "
                 f"{locust['request_count']} ({locust['failure_count']} failed)")
    return "; ".join(parts)
