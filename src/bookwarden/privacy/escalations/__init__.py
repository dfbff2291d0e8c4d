"""privacy/escalations: see the modules of this package."""
