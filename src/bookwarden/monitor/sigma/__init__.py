"""Sigma rules and correlations, loaded with pySigma and evaluated natively on events (docs/monitoring.md)."""
