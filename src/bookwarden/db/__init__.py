"""Database: the embedded or configured server, its two roles, migrations and the tenant context."""
