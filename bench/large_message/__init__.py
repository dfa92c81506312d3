"""The large-message sweep: planning, the worker processes and the bare comparison script."""
