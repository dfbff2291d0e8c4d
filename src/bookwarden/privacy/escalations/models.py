"""Escalations to the platform's data protection officer: one row per matter and level.

Metadata only: which request or complaint, at what level, when it was due, and whether the DPO has
taken it up. What the patron asked or complained about stays with the institution; the DPO sees
that its handling is late, not what it is about (privacy/escalations/service.py).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import STATE
from bookwarden.db.base import Base


class SubjectKind(enum.StrEnum):
    PRIVACY_REQUEST = "privacy_request"
    COMPLAINT = "complaint"


class Level(enum.StrEnum):
    UNACKNOWLEDGED = "unacknowledged"  # a complaint's acknowledgement did not leave within 24 hours
    AT_RISK = "at_risk"  # a complaint 35 days old without an answer
    OVERDUE = "overdue"  # past its due date


class DpoEscalation(Base):
    __tablename__ = "dpo_escalations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "subject_kind", "subject_id", "level", name="once"),
        CheckConstraint("subject_kind IN ('privacy_request', 'complaint')", name="subject_kind_known"),
        CheckConstraint("level IN ('unacknowledged', 'at_risk', 'overdue')", name="level_known"),
        CheckConstraint("(acknowledged_at IS NULL) = (acknowledged_by IS NULL)", name="acknowledged_by_someone"),
        Index("ix_dpo_escalations_due", "due_at"),
    )
    # raised_at comes from the database clock; fetch it on INSERT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    subject_kind: Mapped[str] = mapped_column(String(16), info=STATE)
    subject_id: Mapped[uuid.UUID]  # no foreign key: the record of oversight outlives the matter
    level: Mapped[str] = mapped_column(String(16), info=STATE)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[uuid.UUID | None]  # the operator account of the DPO who took it up
