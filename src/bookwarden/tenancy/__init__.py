"""Tenants (institutions): create, list, suspend; each with its own file area."""
