"""Everything written or shown: result files, .hlog, plots, reports, progress lines."""
