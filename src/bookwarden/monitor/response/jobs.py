"""Active response's duties: end blocks whose time ran out (every minute), forget ended blocks and strikes after
the repeat-offender look-back (daily), and run the block hook for each block and unblock (queued by blocks.py)."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.config import get_settings
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.hook import run_hook
from bookwarden.monitor.response.jails import configured_jails

EXPIRE = "monitor.expire_blocks"
FORGET = "monitor.forget_ended_blocks"


@handler(EXPIRE)
def _expire(db: Database, payload: dict) -> None:
    expire_blocks(db)


def expire_blocks(db: Database) -> int:
    """Mark every block past its time as expired: one event each, the hook told."""
    with platform_session(db) as session:
        return blocks.expire_due(session, SYSTEM)


@handler(FORGET)
def _forget(db: Database, payload: dict) -> None:
    forget_ended_blocks(db)


def keep_ended_for() -> timedelta:
    """Ended blocks are kept as long as the longest jail looks back for repeat offences (at least a day)."""
    return max([timedelta(days=1), *(jail.lookback for jail in configured_jails())])


def forget_ended_blocks(db: Database) -> int:
    keep = keep_ended_for()
    with platform_session(db) as session:
        removed = blocks.forget_ended(session, keep)
        if removed:
            details = {"job": FORGET, "table": "address_blocks", "count": removed, "keep_days": keep.days}
            record(session, Action.PERIOD_ENFORCED, ("address_blocks", None), actor=SYSTEM, details=details)
    return removed


@handler(blocks.HOOK_JOB)
def _hook(db: Database, payload: dict) -> None:
    run_hook(db, get_settings(), payload)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, EXPIRE, EXPIRE, timedelta(minutes=1))
        schedule(session, FORGET, FORGET, timedelta(days=1))
