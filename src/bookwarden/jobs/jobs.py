"""The queue's own recurring duty: forget finished jobs after a while.

Every area declares its duties the same way, in a `jobs.py` of its own: the handlers it registers
and `declare_schedules(db)`, which the worker calls at start for every area `bookwarden.areas` lists.
"""

from __future__ import annotations

from datetime import timedelta

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, purge_finished, schedule

PURGE_FINISHED = "jobs.purge_finished"
KEEP_FINISHED = timedelta(days=30)


@handler(PURGE_FINISHED)
def purge_finished_jobs(db: Database, payload: dict) -> None:
    with platform_session(db) as session:
        purge_finished(session, timedelta(days=int(payload.get("keep_days", KEEP_FINISHED.days))))


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, PURGE_FINISHED, PURGE_FINISHED, timedelta(days=1), {"keep_days": KEEP_FINISHED.days})
