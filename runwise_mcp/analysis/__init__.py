"""Pure functions on the run model: no I/O, no formatting."""
