"""Operator access grants: the only way operator staff reach a tenant's data."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import (
    STATE,
    Category,
    Protection,
    SubjectKind,
    not_personal,
    personal,
    pseudonymous,
    subject_link,
)
from bookwarden.db.base import Base


class GrantScope(enum.StrEnum):
    READ = "read"  # the hosted library data, read
    READ_WRITE = "read_write"  # the hosted library data, read and written
    # Migration 0029: the institution's privacy work (requests, packages, certificates, disclosures,
    # records of processing, retention, publisher reports) and its audit trail, over HTTP and at the console.
    PRIVACY = "privacy"
    AUDIT = "audit"


class GrantStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"


class OperatorGrant(Base):
    __tablename__ = "operator_grants"
    __table_args__ = (
        CheckConstraint("expires_at > starts_at AND expires_at <= starts_at + interval '8 hours'", name="at_most_8h"),
        CheckConstraint("scope IN ('read', 'read_write', 'privacy', 'audit')", name="known_scope"),
        CheckConstraint("status IN ('requested', 'approved', 'denied', 'revoked', 'expired')", name="known_status"),
        # Migration 0025: whoever decides is never the person who asked, whichever credential either used.
        CheckConstraint(
            "decided_by_person IS NULL OR requested_by_person IS NULL OR decided_by_person <> requested_by_person",
            name="decider_is_not_asker_person",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    operator_id: Mapped[uuid.UUID] = mapped_column(
        info=subject_link(SubjectKind.OPERATOR, "the operator principal that asked and may use it")
    )
    # The operator account behind the asking credential (its session's, or an operator token's owner);
    # None for a platform service token and for grants asked before migration 0025.
    requested_by_person: Mapped[uuid.UUID | None] = mapped_column(
        info=subject_link(SubjectKind.OPERATOR, "the operator account that asked, through a session or a token")
    )
    scope: Mapped[str] = mapped_column(String(16), info=STATE)
    justification: Mapped[str] = mapped_column(String(2000), info=personal(Category.STAFF_ACTIVITY, Protection.PLAIN))
    ticket: Mapped[str] = mapped_column(String(200), info=not_personal("a reference in the operator's ticket system"))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), info=STATE)
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False, info=STATE)
    decided_by: Mapped[uuid.UUID | None]
    decided_by_person: Mapped[uuid.UUID | None] = mapped_column(
        info=pseudonymous("the account (tenant admin) or operator account (CISO) that decided")
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
