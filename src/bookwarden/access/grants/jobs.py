"""Operator grants' duty: end every grant whose time is up, every minute (its end is a row, not a timer)."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.access.grants.service import EXPIRE_JOB, end_expired_grants
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule


@handler(EXPIRE_JOB)
def _expire_job(db: Database, payload: dict) -> None:
    end_expired_grants(db)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, EXPIRE_JOB, EXPIRE_JOB, timedelta(minutes=1))
