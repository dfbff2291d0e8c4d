"""Consent's duty: forget, daily, consent records 3 years after their withdrawal (each batch in the
institution's trail, tenancy/periods.py)."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.consent.service import KEEP_AFTER_WITHDRAWAL, RETENTION_JOB, forget_withdrawn
from bookwarden.tenancy.periods import Period, enforce

WITHDRAWN_CONSENT = Period(RETENTION_JOB, "consent_records", KEEP_AFTER_WITHDRAWAL, forget_withdrawn)


@handler(RETENTION_JOB)
def _retention_job(db: Database, payload: dict) -> None:
    enforce(db, WITHDRAWN_CONSENT, actor=SYSTEM)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, RETENTION_JOB, RETENTION_JOB, timedelta(days=1))
