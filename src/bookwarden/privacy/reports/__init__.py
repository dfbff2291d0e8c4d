"""privacy/reports: see the modules of this package."""
