"""identity/accounts: see the modules of this package."""
