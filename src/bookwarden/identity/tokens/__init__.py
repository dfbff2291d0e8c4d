"""identity/tokens: see the modules of this package."""
