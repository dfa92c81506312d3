"""StreamStore Bench: scenarios, measurement, results, reports and the embedded broker."""
