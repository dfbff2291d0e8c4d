"""Whether the collectors run, for the live evidence: where each stopped and when it last moved on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bookwarden.monitor.collect.models import Position


def last_moved(session: Session) -> tuple[int, datetime | None]:
    """(how many sources the collectors follow, when any of them last saved a position)."""
    count, newest = session.execute(select(func.count(), func.max(Position.updated_at))).one()
    return count, newest
