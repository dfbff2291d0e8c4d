"""Security monitoring: log events parsed into one shape, Sigma rules and correlations evaluated on them in event
time, alerts as values (docs/monitoring.md)."""
