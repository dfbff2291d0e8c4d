"""Complaints' duties: record acknowledgements that left, escalate what is unacknowledged, at risk or overdue;
forget, daily, complaints answered 3 years ago (each batch in the institution's trail, tenancy/periods.py)."""

from __future__ import annotations

from datetime import timedelta

import structlog

from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.complaints.service import (
    DEADLINES,
    DEADLINES_EVERY,
    KEEP_AFTER_ANSWER,
    RETENTION_JOB,
    forget_answered,
    process_deadlines,
)
from bookwarden.tenancy.periods import Period, enforce

log = structlog.get_logger()

ANSWERED_COMPLAINTS = Period(RETENTION_JOB, "complaints", KEEP_AFTER_ANSWER, forget_answered)


@handler(DEADLINES)
def _deadlines_job(db: Database, payload: dict) -> None:
    report = process_deadlines(db)
    log.info("privacy.complaint_deadlines", acknowledged=report.acknowledged, escalated=report.escalated)


@handler(RETENTION_JOB)
def _retention_job(db: Database, payload: dict) -> None:
    enforce(db, ANSWERED_COMPLAINTS, actor=SYSTEM)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, DEADLINES, DEADLINES, DEADLINES_EVERY)
        schedule(session, RETENTION_JOB, RETENTION_JOB, timedelta(days=1))
