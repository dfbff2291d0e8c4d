"""File integrity: signed, approved baselines of the platform's files, and scans that report what changed."""
