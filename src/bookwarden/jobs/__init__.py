"""The PostgreSQL job queue and its recurring schedules.

Every deadline-driven duty (retention purges, grant expiry, outbound mail, scans, backups)
is a row in `jobs`, claimed with `SELECT ... FOR UPDATE SKIP LOCKED` under a lease, so no
duty depends on one process staying up. `service` enqueues and records; `worker` runs.
"""
