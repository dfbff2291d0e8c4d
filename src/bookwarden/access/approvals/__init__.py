"""access/approvals: see the modules of this package."""
