"""Data-subject requests' duties: deadlines (remind, escalate, resume, lapse), forms never confirmed, and,
daily, forgetting requests closed 3 years ago (each batch in the institution's trail, tenancy/periods.py)."""

from __future__ import annotations

from datetime import timedelta

import structlog

from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.requests.form import LAPSE, LAPSE_EVERY, lapse_inquiries
from bookwarden.privacy.requests.service import (
    DEADLINES,
    DEADLINES_EVERY,
    KEEP_AFTER_CLOSING,
    RETENTION_JOB,
    finish_interrupted_erasures,
    forget_closed,
    process_deadlines,
)
from bookwarden.tenancy.periods import Period, enforce

log = structlog.get_logger()

CLOSED_REQUESTS = Period(RETENTION_JOB, "privacy_requests", KEEP_AFTER_CLOSING, forget_closed)


@handler(DEADLINES)
def _deadlines_job(db: Database, payload: dict) -> None:
    report = process_deadlines(db)
    # Hourly too: an erasure that died between destroying the key and its commit is finished here.
    finish_interrupted_erasures(db)
    log.info(
        "privacy.request_deadlines",
        reminded=report.reminded,
        escalated=report.escalated,
        resumed=report.resumed,
        lapsed=report.lapsed,
    )


@handler(LAPSE)
def _lapse_job(db: Database, payload: dict) -> None:
    log.info("privacy.inquiries_lapsed", count=lapse_inquiries(db))


@handler(RETENTION_JOB)
def _retention_job(db: Database, payload: dict) -> None:
    enforce(db, CLOSED_REQUESTS, actor=SYSTEM)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, DEADLINES, DEADLINES, DEADLINES_EVERY)
        schedule(session, LAPSE, LAPSE, LAPSE_EVERY)
        schedule(session, RETENTION_JOB, RETENTION_JOB, timedelta(days=1))
