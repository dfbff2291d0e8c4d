"""privacy/complaints: see the modules of this package."""
