"""Stored alerts: a platform table an institution may read the rows of that name it (migration 0032)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import (
    COUNTER,
    MACHINE,
    STATE,
    Category,
    Protection,
    SubjectKind,
    not_personal,
    personal,
    pseudonymous,
)
from bookwarden.db.base import Base

# An address, an account id or a host user name a correlation grouped by: about whoever used them.
GROUPED = personal(Category.DEVICE_NETWORK, Protection.PLAIN, subject=SubjectKind.PRINCIPAL)
EVENT_TIME = not_personal("when the events an alert counts happened; about a person only through the alert's group")


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"  # someone is on it; repeats still fold into it
    CLOSED = "closed"  # done: the next match of its rule and group opens a new alert


class AlertSeverity(enum.StrEnum):
    """Sigma's levels, in rising order."""

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(AlertSeverity).index(self)


class StoredAlert(Base):
    __tablename__ = "monitor_alerts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    rule: Mapped[str] = mapped_column(String(200), info=STATE)
    title: Mapped[str] = mapped_column(Text, info=not_personal("the rule's title"))
    severity: Mapped[AlertSeverity] = mapped_column(String(16), info=STATE)
    kind: Mapped[str] = mapped_column(String(16), info=STATE)  # detection, correlation, raised
    # Canonical JSON of the group (and institution): what repeats are folded by.
    group_key: Mapped[str] = mapped_column(Text, info=GROUPED)
    grouped: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, info=GROUPED)
    # Not `tenant_id`: no tenant-scoped row (the platform writes it); an institution reads the rows naming it.
    institution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=MACHINE)
    source_address: Mapped[str | None] = mapped_column(String(64), info=GROUPED)
    summary: Mapped[str | None] = mapped_column(
        Text, info=not_personal("what raised an alert outside the rules, in the platform's words: ids, never values")
    )
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), info=EVENT_TIME)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), info=EVENT_TIME)
    count: Mapped[int] = mapped_column(Integer, info=COUNTER)
    # The engine episode now folded in (its first_seen) and the count before it: an opening alert and its final
    # one are the same episode (the final count replaces the opening's), a new episode adds to the count.
    episode_first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=EVENT_TIME)
    episode_base: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    status: Mapped[AlertStatus] = mapped_column(String(16), default=AlertStatus.OPEN, info=STATE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("the operator who acknowledged"))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("the operator who closed it"))
