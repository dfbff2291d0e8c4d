"""The library's duty: hourly, the deletions whose grace period ended are carried out or lapse (library/deletion.py)."""

from __future__ import annotations

import structlog

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.library.deletion import DUE_EVERY, DUE_JOB, carry_out_due

log = structlog.get_logger()


@handler(DUE_JOB)
def _due_job(db: Database, payload: dict) -> None:
    outcome = carry_out_due(db)
    log.info("library.patron_deletions_due", destroyed=outcome.destroyed, lapsed=outcome.lapsed, held=outcome.held)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, DUE_JOB, DUE_JOB, DUE_EVERY)
