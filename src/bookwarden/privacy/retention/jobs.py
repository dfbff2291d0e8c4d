"""Retention's duties: the daily purge of each institution's data past its period, and the daily drop of
sealed audit segments past theirs (each institution's chain keeps its own period, never under the
platform's, and its legal holds)."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.audit.retention import RETENTION_JOB
from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.retention.service import PURGE_JOB, drop_audit_segments, purge_all


@handler(PURGE_JOB)
def _purge_job(db: Database, payload: dict) -> None:
    purge_all(db)


@handler(RETENTION_JOB)
def _audit_retention_job(db: Database, payload: dict) -> None:
    drop_audit_segments(db, timedelta(days=get_settings().audit_retention_days))


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, PURGE_JOB, PURGE_JOB, timedelta(days=1))
        schedule(session, RETENTION_JOB, RETENTION_JOB, timedelta(days=1))
