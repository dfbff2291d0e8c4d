"""Concerns' duty: forget, daily, reports received 2 years ago (each batch in the institution's trail,
tenancy/periods.py)."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.concerns.service import KEEP_AFTER_RECEIPT, RETENTION_JOB, TABLE, forget_received
from bookwarden.tenancy.periods import Period, enforce

RECEIVED_CONCERNS = Period(RETENTION_JOB, TABLE, KEEP_AFTER_RECEIPT, forget_received)


@handler(RETENTION_JOB)
def _retention_job(db: Database, payload: dict) -> None:
    enforce(db, RECEIVED_CONCERNS, actor=SYSTEM)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, RETENTION_JOB, RETENTION_JOB, timedelta(days=1))
