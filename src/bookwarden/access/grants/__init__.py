"""access/grants: see the modules of this package."""
