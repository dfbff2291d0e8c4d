"""Data-subject requests: the institution's queue, one-time codes, its deadline policy, restrictions.

A request sits in its institution's queue (tenant table, RLS): the institution is the controller and
its privacy officers decide. What the patron asked to be corrected, why a request was denied and why
it is held are sealed under the institution's own key (like complaints): the institution must be able
to show how it handled a request whatever happens to the patron's other data. `patron_id` has no
foreign key on purpose: the request, and the proof that it was carried out, outlive an erasure.

A request sent to the platform without naming an institution is a platform-level inquiry until the
requester names one; its contact address is sealed under a key of its own, shredded when it is
forwarded or lapses. Migration 0014 creates these tables; privacy/requests/service.py holds what is done.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ARRAY, CheckConstraint, DateTime, ForeignKey, Index, Integer, LargeBinary, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import (
    COUNTER,
    SETTING,
    STATE,
    Category,
    Protection,
    SubjectKind,
    not_personal,
    personal,
    pseudonymous,
    subject_link,
)
from bookwarden.db.base import Base, tenant_fk
from bookwarden.library.models import Patron  # noqa: F401 - target of the restriction's foreign key

SEALED = personal(Category.PRIVACY_REQUESTS, Protection.TENANT_KEY)


class RequestKind(enum.StrEnum):
    ACCESS = "access"  # a copy of every record about the patron
    PORTABILITY = "portability"  # the same, machine-readable, to take elsewhere
    RECTIFICATION = "rectification"  # correct fields of the patron record
    ERASURE = "erasure"
    RESTRICTION = "restriction"  # keep the data but stop changing it
    OBJECTION = "objection"  # to disclosure to third parties, or to a purpose


class RequestState(enum.StrEnum):
    RECEIVED = "received"
    IDENTITY_VERIFIED = "identity_verified"
    APPROVED = "approved"
    DENIED = "denied"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ON_LEGAL_HOLD = "on_legal_hold"


class RequestChannel(enum.StrEnum):
    PATRON = "patron"  # the patron, signed in to the portal
    STAFF = "staff"  # staff, on the patron's behalf
    FORM = "form"  # the unauthenticated form (directly, or forwarded from a platform inquiry)


class Verification(enum.StrEnum):
    SIGNED_IN = "signed_in"  # the patron's own account, signed in
    STAFF = "staff"  # staff saw proof of identity (at the desk, by letter)
    EMAIL_CODE = "email_code"  # a one-time code mailed to the address on file


class PrivacyRequest(Base):
    __tablename__ = "privacy_requests"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('access', 'portability', 'rectification', 'erasure', 'restriction', 'objection')",
            name="kind_known",
        ),
        CheckConstraint(
            "state IN ('received', 'identity_verified', 'approved', 'denied', 'in_progress', 'completed', "
            "'on_legal_hold')",
            name="state_known",
        ),
        CheckConstraint("channel IN ('patron', 'staff', 'form')", name="channel_known"),
        CheckConstraint("(kind = 'objection') = (objection_scope IS NOT NULL)", name="objection_has_scope"),
        CheckConstraint("(kind = 'rectification') = (corrections IS NOT NULL)", name="rectification_has_corrections"),
        CheckConstraint("state <> 'denied' OR decision_reason IS NOT NULL", name="denied_has_reason"),
        CheckConstraint(
            "(state = 'on_legal_hold') = (held_from IS NOT NULL) AND (held_from IS NULL OR held_from IN "
            "('received', 'identity_verified', 'approved', 'in_progress'))",
            name="hold_resumes",
        ),
        CheckConstraint("due_at > received_at", name="due_after_receipt"),
        Index("ix_privacy_requests_queue", "tenant_id", "state", "due_at"),
        Index("ix_privacy_requests_patron", "tenant_id", "patron_id"),
        Index(
            "ix_privacy_requests_shared_address",
            "tenant_id",
            "shared_address_group",
            postgresql_where=text("shared_address_group IS NOT NULL"),
        ),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 - received_at comes from the database clock

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16), info=STATE)
    channel: Mapped[str] = mapped_column(String(16), info=STATE)
    patron_id: Mapped[uuid.UUID] = mapped_column(
        info=subject_link(SubjectKind.PATRON, "the patron the request is about (kept after an erasure, as proof)")
    )
    registered_by: Mapped[uuid.UUID | None]  # the principal that registered it; null for the form
    inquiry_id: Mapped[uuid.UUID | None]  # the platform inquiry it was forwarded from
    # One form whose address is on file for several patrons (a shared or a duplicated address) makes one
    # request per patron, all confirmed by the one code: they share this id (the form's challenge id), and
    # the officer decides which patron(s) asked. Null for every other request.
    shared_address_group: Mapped[uuid.UUID | None] = mapped_column(
        info=not_personal("the form's challenge id, shared by the requests one form made for a shared address")
    )
    objection_scope: Mapped[str | None] = mapped_column(
        String(80), info=not_personal('"third_party_disclosure" or "purpose:<name>": what the objection is to')
    )
    correction_fields: Mapped[list[str] | None] = mapped_column(
        ARRAY(String(32)), info=not_personal("names of the patron fields a rectification corrects, never values")
    )
    # Under the patron's subject key (shredded by an erasure), unlike the reasons, which are the institution's.
    corrections: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.PRIVACY_REQUESTS))
    state: Mapped[str] = mapped_column(String(24), info=STATE)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verification: Mapped[str | None] = mapped_column(String(16), info=STATE)
    approval_id: Mapped[uuid.UUID | None]  # the second officer's approval a staff-initiated erasure waits for
    decided_by: Mapped[uuid.UUID | None]
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[bytes | None] = mapped_column(LargeBinary, info=SEALED)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_by: Mapped[uuid.UUID | None]
    outcome_id: Mapped[uuid.UUID | None]  # the package, certificate or objection that carried it out
    held_from: Mapped[str | None] = mapped_column(String(24), info=STATE)
    held_by: Mapped[uuid.UUID | None]
    held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    held_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), info=not_personal("when a legal hold ends by itself")
    )
    hold_reason: Mapped[bytes | None] = mapped_column(LargeBinary, info=SEALED)
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RequestChallenge(Base):
    """A one-time code of the unauthenticated form, stored as a keyed hash; a decoy has no request."""

    __tablename__ = "privacy_request_challenges"
    __table_args__ = (
        tenant_fk("privacy_request_challenges", "request_id", "privacy_requests", "request"),
        CheckConstraint("attempts >= 0", name="attempts_counted"),
        Index("ix_privacy_request_challenges_request", "tenant_id", "request_id"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID | None]
    code_hash: Mapped[bytes] = mapped_column(
        LargeBinary,
        info=not_personal("keyed hash of a random one-time code, bound to its challenge; says nothing of anyone"),
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RequestPolicy(Base):
    """The institution's deadline for answering requests; absent: the defaults (30 days, reminded 7 before).
    A reminder period as long as the deadline reminds as soon as a request is verified."""

    __tablename__ = "privacy_request_policies"
    __table_args__ = (
        CheckConstraint(
            "respond_within_days BETWEEN 1 AND 90 AND remind_before_days BETWEEN 0 AND 30",
            name="days_in_range",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    respond_within_days: Mapped[int] = mapped_column(Integer, info=SETTING)
    remind_before_days: Mapped[int] = mapped_column(Integer, info=SETTING)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[uuid.UUID | None]


class InquiryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for the requester to name the institution
    FORWARDED = "forwarded"
    LAPSED = "lapsed"  # never named within its time: the contact address is shredded


class PrivacyInquiry(Base):
    """A request sent to the platform without naming an institution (a platform table: no tenant yet)."""

    __tablename__ = "privacy_inquiries"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('access', 'portability', 'rectification', 'erasure', 'restriction', 'objection')",
            name="kind_known",
        ),
        CheckConstraint("status IN ('pending', 'forwarded', 'lapsed')", name="status_known"),
        CheckConstraint("(status = 'pending') = (contact_address IS NOT NULL)", name="pending_has_contact"),
        CheckConstraint(
            "(status = 'forwarded') = (forwarded_to IS NOT NULL AND forwarded_at IS NOT NULL)",
            name="forwarded_names_institution",
        ),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    reference_hash: Mapped[bytes] = mapped_column(
        LargeBinary, unique=True, info=pseudonymous("SHA-256 of the random tracking reference given to the requester")
    )
    kind: Mapped[str] = mapped_column(String(16), info=STATE)
    objection_scope: Mapped[str | None] = mapped_column(
        String(80), info=not_personal('"third_party_disclosure" or "purpose:<name>": what the objection is to')
    )
    contact_address: Mapped[bytes | None] = mapped_column(
        LargeBinary, info=personal(Category.CONTACT, Protection.SUBJECT_KEY, subject=SubjectKind.CONTACT)
    )
    status: Mapped[str] = mapped_column(String(16), info=STATE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    forwarded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    forwarded_to: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"))
