"""The worker's file-integrity duty: a scan every hour (a full re-hash when the last one is older than
`fim_full_scan_hours`), its findings handed to the alert sinks (monitor/host_events.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.monitor import host_events
from bookwarden.monitor.fim import service
from bookwarden.monitor.fim.scan import findings_as_events

SCAN_JOB = "fim.scan"
EVERY = timedelta(hours=1)
log = structlog.get_logger()


@handler(SCAN_JOB)
def _scan(db: Database, payload: dict[str, Any]) -> None:
    try:
        outcome = service.run_scan(db, get_settings())
    except service.NoBaseline:
        log.warning("fim_scan_skipped", reason="no approved baseline yet")
        return
    host_events.publish(db, findings_as_events(outcome.findings))


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, SCAN_JOB, SCAN_JOB, EVERY)
