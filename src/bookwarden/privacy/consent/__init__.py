"""privacy/consent: see the modules of this package."""
