"""The worker's rootcheck duty: every six hours, its findings handed to the alert sinks (monitor/host_events.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.monitor import host_events
from bookwarden.monitor.rootcheck import service

ROOTCHECK_JOB = "monitor.rootcheck"
EVERY = timedelta(hours=6)


@handler(ROOTCHECK_JOB)
def _rootcheck(db: Database, payload: dict[str, Any]) -> None:
    result = service.run_rootcheck(db, get_settings())
    host_events.publish(db, service.findings_as_events(result.findings))


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, ROOTCHECK_JOB, ROOTCHECK_JOB, EVERY)
