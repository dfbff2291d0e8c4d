"""privacy/retention: see the modules of this package."""
