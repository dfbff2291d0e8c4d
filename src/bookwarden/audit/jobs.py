"""The audit trail's duty: seal every chain in a signed checkpoint (every 1,000 events or 10 minutes).

Dropping sealed segments past their retention is a privacy duty (each institution's period and its
legal holds decide it): privacy/retention/jobs.py declares it.
"""

from __future__ import annotations

from datetime import timedelta

from bookwarden.audit import signing
from bookwarden.audit.checkpoints import CHECKPOINT_JOB, EVERY, EVERY_EVENTS, checkpoint_all
from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule


@handler(CHECKPOINT_JOB)
def _checkpoint_job(db: Database, payload: dict) -> None:
    checkpoint_all(
        db,
        signing.load_signing_key(get_settings()),
        every_events=int(payload.get("every_events", EVERY_EVENTS)),
        every=timedelta(minutes=int(payload.get("every_minutes", EVERY.total_seconds() // 60))),
    )


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(
            session,
            CHECKPOINT_JOB,
            CHECKPOINT_JOB,
            timedelta(minutes=1),
            {"every_events": EVERY_EVENTS, "every_minutes": int(EVERY.total_seconds() // 60)},
        )
