"""privacy/registration: see the modules of this package."""
