"""privacy/requests: see the modules of this package."""
