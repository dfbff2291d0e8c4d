"""access/roles: see the modules of this package."""
