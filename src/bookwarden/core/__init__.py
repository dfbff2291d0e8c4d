"""core: see the modules of this package."""
