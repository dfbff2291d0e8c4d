"""Operator grants' duties: end every grant whose time is up, every minute (its end is a row, not a timer);
forget, daily, the grants that ended 2 years ago (the justification is the operator's words about the
institution's data: kept as long as the registry says, then gone; the trail keeps every step without it)."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.access.grants.service import (
    EXPIRE_JOB,
    FORGET_ENDED_JOB,
    KEEP_AFTER_END,
    end_expired_grants,
    forget_ended,
)
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.tenancy.periods import Period, enforce

ENDED_GRANTS = Period(FORGET_ENDED_JOB, "operator_grants", KEEP_AFTER_END, forget_ended)


@handler(EXPIRE_JOB)
def _expire_job(db: Database, payload: dict) -> None:
    end_expired_grants(db)


@handler(FORGET_ENDED_JOB)
def _forget_ended_job(db: Database, payload: dict) -> None:
    enforce(db, ENDED_GRANTS, actor=SYSTEM)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, EXPIRE_JOB, EXPIRE_JOB, timedelta(minutes=1))
        schedule(session, FORGET_ENDED_JOB, FORGET_ENDED_JOB, timedelta(days=1))
