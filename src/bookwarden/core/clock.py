"""The database clock: every deadline and expiry is set and checked against it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def db_now(session: Session) -> datetime:
    """The database's now(), so workers and HTTP processes on different machines agree on every
    deadline (an application clock running ahead would expire things early)."""
    return session.scalar(select(func.now()))
