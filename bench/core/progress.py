"""Live progress of a run, once a second: one rewritten line on a terminal, plain lines otherwise
(a CI log or a file gets one readable line per second, no carriage returns)."""

from __future__ import annotations

from typing import TextIO

from bench.core.result import DELIVERY_REPORT_MODES
from bench.results.formatting import format_us
from bench.results.metrics import LATENCY_LABELS

_LABEL = {kind: label for kind, (label, _span) in LATENCY_LABELS.items()}


def p99_scope(second: int, warmup_s: float) -> str:
    """What the live p99 of a second covers, said in its line: the summary leaves the warm-up
    out, so while the run is in it the p99 is that second's alone, and from the first measured
    second on it covers every measured second. Unlabelled, the switch reads as a sudden drop
    (the warm-up's slow first sends leave the p99)."""
    if not warmup_s:
        return "so far"
    return "since warm-up" if second + 1 > warmup_s else "this second (warm-up)"


def progress_line(t_s: int, sent: int, acked: int, consumed: int, service_p99_us: int | None,
                  response_p99_us: int | None, end_to_end_p99_us: int | None, lag_messages: int | None,
                  scope: str = "so far") -> str:
    """One second of a run as text: rates of that second, the p99 over `scope` (p99_scope), lag at its end."""
    parts = [f"t={t_s:>4}s  sent {sent:>7,}/s  acked {acked:>7,}/s  consumed {consumed:>7,}/s",
             f"p99 {scope}: {_LABEL['service_time']} {format_us(service_p99_us)}"]
    if response_p99_us is not None:
        parts[-1] += f", {_LABEL['response_time']} {format_us(response_p99_us)}"
    parts[-1] += f", {_LABEL['end_to_end']} {format_us(end_to_end_p99_us)}"
    parts.append(f"lag {lag_messages:,}" if lag_messages is not None else "lag -")
    return "  |  ".join(parts)


class Progress:
    def __init__(self, stream: TextIO):
        self.stream = stream
        self.on_terminal = stream.isatty()
        self._line_open = False

    def update(self, line: str) -> None:
        if self.on_terminal:
            self.stream.write("\r\x1b[2K" + line)
            self._line_open = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, line: str) -> None:
        """A line that stays (phase changes, the summary)."""
        self.end_line()
        self.stream.write(line + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False


def second_line(recorder, scenario, through: int) -> str:
    """The progress line of the newest second every producer and the tracker have reported."""
    counts = recorder.counts_by_second
    return progress_line(
        through + 1, counts["sent"][through], counts["acked"][through], counts["consumed"][through],
        recorder.p99_so_far("service_time", through),
        recorder.p99_so_far("response_time", through) if scenario.rate else None,
        recorder.p99_so_far("end_to_end", through), recorder.lag_messages.get(through),
        p99_scope(through, recorder.warmup_s))


def describe_run(scenario, mode: str = "produce-and-consume", consume_from: str = "end") -> str:
    """The run's load in words, for its first progress line."""
    if mode == "consume-only":
        return f"consume-only: reading the topic from its {consume_from}"
    one_side = "produce-only (the audit reads the topic afterwards), " if mode == "produce-only" else ""
    backlog = (f"backlog of {scenario.backlog_messages():,} messages first (consumers paused), then "
               if scenario.backlog else "")
    return one_side + backlog + _describe_rate(scenario)


def _describe_rate(scenario) -> str:
    if scenario.phases:
        reports = f"delivery reports: {DELIVERY_REPORT_MODES[scenario.delivery_reports]}"
        return f"{reports}, phases " + ", ".join(f"{p.rate:,.0f}/s for {p.duration_s:g} s" for p in scenario.phases)
    rate = "flat out (rate 0)" if scenario.rate == 0 else f"{scenario.rate:,.0f} msg/s"
    return f"{rate}, delivery reports: {DELIVERY_REPORT_MODES[scenario.delivery_reports]}"
