"""identity/operators: see the modules of this package."""
