"""identity/signin: see the modules of this package."""
