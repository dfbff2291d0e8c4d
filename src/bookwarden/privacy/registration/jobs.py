"""Self-registration's duty: hourly, registrations whose address was not confirmed in time lapse (erased)."""

from __future__ import annotations

import structlog

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.registration.service import LAPSE_EVERY, LAPSE_JOB, lapse_unconfirmed

log = structlog.get_logger()


@handler(LAPSE_JOB)
def _lapse_job(db: Database, payload: dict) -> None:
    log.info("privacy.self_registrations_lapsed", count=lapse_unconfirmed(db))


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, LAPSE_JOB, LAPSE_JOB, LAPSE_EVERY)
