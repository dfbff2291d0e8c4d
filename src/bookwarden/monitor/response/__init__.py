"""Active response, like fail2ban inside the platform: jails turn alerts into blocks of source addresses
(enforced by every HTTP process), account locks and session revocations (docs/monitoring.md)."""
