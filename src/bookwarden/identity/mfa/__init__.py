"""identity/mfa: see the modules of this package."""
