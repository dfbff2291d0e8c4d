"""Data-subject requests' duties: deadlines (remind, escalate, resume, lapse) and forms never confirmed."""

from __future__ import annotations

import structlog

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.privacy.requests.form import LAPSE, LAPSE_EVERY, lapse_inquiries
from bookwarden.privacy.requests.service import DEADLINES, DEADLINES_EVERY, process_deadlines

log = structlog.get_logger()


@handler(DEADLINES)
def _deadlines_job(db: Database, payload: dict) -> None:
    report = process_deadlines(db)
    log.info(
        "privacy.request_deadlines",
        reminded=report.reminded,
        escalated=report.escalated,
        resumed=report.resumed,
        lapsed=report.lapsed,
    )


@handler(LAPSE)
def _lapse_job(db: Database, payload: dict) -> None:
    log.info("privacy.inquiries_lapsed", count=lapse_inquiries(db))


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, DEADLINES, DEADLINES, DEADLINES_EVERY)
        schedule(session, LAPSE, LAPSE, LAPSE_EVERY)
