"""Complaints' duty: record acknowledgements that left, escalate what is unacknowledged, at risk or overdue."""

from __future__ import annotations

import structlog

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.complaints.service import DEADLINES, DEADLINES_EVERY, process_deadlines

log = structlog.get_logger()


@handler(DEADLINES)
def _deadlines_job(db: Database, payload: dict) -> None:
    report = process_deadlines(db)
    log.info("privacy.complaint_deadlines", acknowledged=report.acknowledged, escalated=report.escalated)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, DEADLINES, DEADLINES, DEADLINES_EVERY)
