"""The regression gate's summary (bench regress --summary): each check's baseline and candidate
figures, the change, the test's p-value and verdict."""

from __future__ import annotations

from collections.abc import Sequence

from bench.analysis.compare import Verdict
from bench.output.document import Block, bullet_list, heading, paragraph, table
from bench.results.formatting import format_change, format_value


def regress_summary_blocks(
    baseline_label: str, candidate_label: str, verdicts: Sequence[Verdict], alpha: float, outcome_line: str,
) -> list[Block]:
    body = [(
        v.check.describe() + (f" (floor {format_value(v.check.floor, v.check.metric.unit)})" if v.check.floor else ""),
        format_value(v.baseline, v.check.metric.unit), format_value(v.candidate, v.check.metric.unit),
        format_change(v.change), "-" if v.p_value is None else f"{v.p_value:.3g}",
        f"{v.samples[0]}/{v.samples[1]}", v.outcome.upper() if v.is_regression else v.outcome,
    ) for v in verdicts]
    return [
        heading(f"bench regress: {outcome_line}", 2),
        paragraph(f"Baseline {baseline_label}, candidate {candidate_label}. A regression needs a change beyond "
                  f"the threshold and the floor, and a one-sided Mann-Whitney U test with p < {alpha:g} on "
                  f"independent samples: the means of blocks of seconds as long as each series' autocorrelation."),
        table(("check", "baseline", "candidate", "change", "p", "blocks", "verdict"), body),
        bullet_list([v.reason for v in verdicts]),
    ]
