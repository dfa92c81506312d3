"""Pure statistics and comparison: summaries, deltas, regression verdicts (no I/O)."""
