"""The metric table is the one place a metric is named: no module outside bench/results/metrics.py
spells a latency's label, and every figure a report, compare or the gate reads is in the table.

Pure: the source is read as text, no broker."""

from __future__ import annotations

import re
from pathlib import Path

from bench.analysis.compare import DELTA_METRICS, delta_rows
from bench.output.report import SUMMARY_METRICS
from bench.results.metrics import LATENCY_LABELS, METRICS, SERIES
from bench.results.window import series_samples

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "bench" / "results" / "metrics.py"
# A metric's label written out as a string literal elsewhere: a latency with its statistic
# ("service time p99"), or the label of a throughput or lag figure.
_LATENCY_LABEL = "|".join(re.escape(label) for label, _span in LATENCY_LABELS.values())
_METRIC_LABEL = re.compile(rf"(?:{_LATENCY_LABEL}) (?:p\d|max|mean|min)|throughput \(|consumer (?:time )?lag max")
_STRING = re.compile(r"""(?:[rfb]{0,2})("[^"\n]*"|'[^'\n]*')""")


def _string_literals(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith(('"', "'", 'f"', "f'")) else line
        found += [(number, literal) for literal in _STRING.findall(code)]
    return found


def test_no_metric_label_is_spelt_outside_the_table():
    offenders = []
    for path in sorted((ROOT / "bench").rglob("*.py")) + [ROOT / "scenarios" / "orders.py"]:
        if path == TABLE:
            continue
        for number, literal in _string_literals(path):
            if _METRIC_LABEL.search(literal):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {literal}")
    assert not offenders, "metric labels spelt outside bench/results/metrics.py:\n" + "\n".join(offenders)


def test_every_figure_read_by_reports_and_compare_is_in_the_table():
    assert set(DELTA_METRICS) <= set(METRICS) and set(SUMMARY_METRICS) <= set(METRICS)
    for metric in METRICS.values():
        assert metric.series_key is None or metric.series_key in SERIES, metric.name


def test_summary_throughput_is_the_gate_metric_and_the_delta_row():
    """One throughput: the summary's figure is what the gate's metric reads and what compare shows,
    and it is the mean of the per-second acks over the window the gate's samples come from."""
    series = {"t_s": [1, 2, 3, 4, 5, 6], "sent": [10, 20, 20, 20, 5, 0], "acked": [8, 20, 19, 21, 6, 1]}
    from bench.results.window import throughput_summary

    result = {"warmup_s": 1, "series": series, "throughput": throughput_summary(series, 1, 200)}
    samples = series_samples(result, "acked")
    assert samples == [20, 19, 21]  # after warm-up, before the last second with sends and the drain
    assert METRICS["throughput"].read(result) == sum(samples) / len(samples) == 20.0
    assert result["throughput"]["acked_mb_s"] == 20.0 * 200 / 1e6
    row = next(row for row in delta_rows([result, result]) if row.label == METRICS["throughput"].label)
    assert row.values == (20.0, 20.0)
