"""Disclosures of personal data to third parties: one row per sharing, one row per subject it named.

Append-only like the consent records (migration 0017: the application role may SELECT and INSERT
only; a trigger refuses UPDATE). A subject row goes with its patron (ON DELETE CASCADE): once a
patron is erased the disclosure still says how many people it concerned, not who.

The notice policy says, per kind of disclosure, whether the subjects are told (privacy/disclosures/service.py).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, SETTING, STATE, not_personal
from bookwarden.db.base import Base, tenant_fk
from bookwarden.library.models import Patron  # noqa: F401 - target of the patron foreign key

RECIPIENT = not_personal("the receiving organisation (a service provider, an authority, the institution's analysts)")


class DisclosureKind(enum.StrEnum):
    USAGE_ANALYSIS = "usage_analysis"  # the institution's own usage analysis, by an outside party
    SERVICE_PROVIDER = "service_provider"  # a processor working on the institution's behalf
    LEGAL_REQUEST = "legal_request"  # a court, the police, a regulator
    OTHER = "other"  # any other third party


class LegalBasis(enum.StrEnum):
    """GDPR art. 6(1)."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


KINDS_SQL = ", ".join(f"'{k.value}'" for k in DisclosureKind)
BASES_SQL = ", ".join(f"'{b.value}'" for b in LegalBasis)


class Disclosure(Base):
    __tablename__ = "disclosures"
    __table_args__ = (
        CheckConstraint(f"kind IN ({KINDS_SQL})", name="kind_known"),
        CheckConstraint(f"basis IN ({BASES_SQL})", name="basis_known"),
        CheckConstraint("jsonb_typeof(categories) = 'array'", name="categories_array"),
        CheckConstraint("subject_count >= 0 AND refused_count >= 0 AND notices_queued >= 0", name="counts"),
        # Telling the subjects may be withheld only where the law forbids it: for a legal request.
        CheckConstraint("notice_withheld_reason IS NULL OR kind = 'legal_request'", name="withheld_only_legal"),
        # Never direct marketing (core/purposes.py): NOT VALID in migration 0030, for new rows.
        CheckConstraint("purpose !~ '(market|advertis|promot)'", name="not_marketing"),
        Index("ix_disclosures_time", "tenant_id", "disclosed_at"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    recipient: Mapped[str] = mapped_column(String(200), info=RECIPIENT)
    kind: Mapped[str] = mapped_column(String(32), info=STATE)
    purpose: Mapped[str] = mapped_column(String(80), info=STATE)
    basis: Mapped[str] = mapped_column(String(32), info=STATE)
    categories: Mapped[list[Any]] = mapped_column(
        JSONB, info=not_personal("names of the categories of data shared (core/classification.py Category)")
    )
    reference: Mapped[str | None] = mapped_column(
        String(200), info=not_personal("the recipient's or the institution's reference: a contract, an order number")
    )
    subject_count: Mapped[int] = mapped_column(Integer, info=COUNTER)
    refused_count: Mapped[int] = mapped_column(Integer, info=COUNTER)  # left out: objected or restricted
    notices_queued: Mapped[int] = mapped_column(Integer, info=COUNTER)
    notice_withheld_reason: Mapped[str | None] = mapped_column(
        String(500), info=not_personal("why the subjects were not told (the law forbids it), in staff's words")
    )
    disclosed_by: Mapped[uuid.UUID]
    disclosed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DisclosureSubject(Base):
    __tablename__ = "disclosure_subjects"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "disclosure_id"],
            ["disclosures.tenant_id", "disclosures.id"],
            ondelete="CASCADE",
            name="fk_disclosure_subjects_disclosure",
        ),
        tenant_fk("disclosure_subjects", "patron_id", "patrons", "patron"),
        Index("ix_disclosure_subjects_patron", "tenant_id", "patron_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    disclosure_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    patron_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    notice_message_id: Mapped[uuid.UUID | None]  # the notice in the outbox (no foreign key: mail is purged)


class DisclosureNoticePolicy(Base):
    """Whether subjects are told of a kind of disclosure; a kind without a row follows NOTICE_DEFAULTS."""

    __tablename__ = "disclosure_notice_policies"
    __table_args__ = (CheckConstraint(f"kind IN ({KINDS_SQL})", name="kind_known"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True, info=STATE)
    notify: Mapped[bool] = mapped_column(Boolean, info=SETTING)
    changed_by: Mapped[uuid.UUID]
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
