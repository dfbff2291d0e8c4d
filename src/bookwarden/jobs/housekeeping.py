"""The queue's own recurring duty: forget finished jobs after a while.

Each area that has deadline-driven duties registers its handlers and schedules in a module
like this one, and lists it in `DUTIES` so the worker imports and declares it at start.
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


# Modules whose `declare_schedules(db)` the worker calls at start (importing them registers handlers).
DUTIES = (
    "bookwarden.jobs.housekeeping",
    "bookwarden.notify.delivery",
    "bookwarden.identity.jobs",
    "bookwarden.access.grants.service",
    "bookwarden.audit.checkpoints",
    "bookwarden.audit.retention",
    "bookwarden.privacy.complaints.service",
    "bookwarden.privacy.requests.service",
    "bookwarden.privacy.subjects.export",
    "bookwarden.privacy.retention.service",
)


def declare_all(db: Database) -> None:
    import importlib

    for name in DUTIES:
        importlib.import_module(name).declare_schedules(db)
