"""Backups of the platform, of one institution and of the keyring; restore drills; restores."""
