"""Identity's recurring duty: forget per-address failure counts that have gone quiet."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.db.session import Database, platform_session
from bookwarden.identity.throttle import forget_quiet_addresses
from bookwarden.jobs.service import handler, schedule

FORGET_ADDRESSES = "identity.forget_quiet_addresses"


@handler(FORGET_ADDRESSES)
def _forget(db: Database, payload: dict) -> None:
    with platform_session(db) as session:
        forget_quiet_addresses(session)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, FORGET_ADDRESSES, FORGET_ADDRESSES, timedelta(days=1))
