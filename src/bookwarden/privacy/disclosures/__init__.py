"""privacy/disclosures: see the modules of this package."""
