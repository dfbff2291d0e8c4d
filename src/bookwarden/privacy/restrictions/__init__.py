"""privacy/restrictions: see the modules of this package."""
