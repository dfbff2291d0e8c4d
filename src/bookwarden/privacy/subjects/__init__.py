"""privacy/subjects: see the modules of this package."""
