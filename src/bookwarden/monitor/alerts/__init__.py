"""Stored alerts: grouped repeats, delivery by mail and webhook, reading and handling by operators and
institutions (docs/monitoring.md)."""
