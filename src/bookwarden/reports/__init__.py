"""Monthly security reports and live evidence of every promise of the statement."""
