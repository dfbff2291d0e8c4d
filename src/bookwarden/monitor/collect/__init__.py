"""Collection: log files tailed and the audit trail read, each from a saved position, into the engine through a
bounded queue; `bookwarden monitor run` (docs/monitoring.md)."""
