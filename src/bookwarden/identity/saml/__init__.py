"""identity/saml: see the modules of this package."""
