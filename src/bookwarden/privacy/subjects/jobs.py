"""Subject rights' duty: delete access packages past their 7 days, with the key that sealed them."""

from __future__ import annotations

import structlog

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.subjects.export import PURGE, PURGE_EVERY, purge_expired

log = structlog.get_logger()


@handler(PURGE)
def _purge_job(db: Database, payload: dict) -> None:
    removed = purge_expired(db)
    log.info("privacy.subject_exports_purged", removed=removed)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, PURGE, PURGE, PURGE_EVERY)
