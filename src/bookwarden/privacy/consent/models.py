"""Consent records, cookie choices and objections: three append-only histories per patron.

Nothing here is ever updated: a change of mind is a new row, and the current state is derived
from the latest row (by `seq`, a database sequence, so two choices made in one transaction still
have an order). The application role may only SELECT and INSERT (migration 0017), and a trigger
refuses UPDATE for every role. The rows go with their patron (tenant foreign keys, ON DELETE
CASCADE), as everything about them does: erasing a patron removes their choices with them.

None of these rows holds a value that names the person: they say what was chosen, when, how and
under which notice, and are about the patron only through patron_id. The choice itself is personal
data (category preferences), readable by the database, which must test it for every optional mail.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Identity, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import STATE, Category, Protection, not_personal, personal, pseudonymous
from bookwarden.db.base import Base, tenant_fk
from bookwarden.library.models import Patron  # noqa: F401 - target of the patron foreign key

ORDER = not_personal("order of the history: a database sequence")
NOTICE = not_personal("version of the institution's privacy or cookie notice shown when the choice was made")
# A person's choice about their own data: personal (category preferences), kept readable because every
# optional mail and every disclosure must test it in SQL; it says nothing without the row's patron.
CHOSEN = personal(Category.PREFERENCES, Protection.PLAIN)
# Set to clock_timestamp(), not now(): every row of one transaction gets its own time.
CLOCK = text("clock_timestamp()")


class ConsentMethod(enum.StrEnum):
    """How a choice reached us."""

    PORTAL = "portal"  # the patron, signed in to the privacy portal
    STAFF = "staff"  # staff on the patron's behalf (at the desk, by phone)
    FORM = "form"  # a signed paper or web form the patron filled in, entered by staff
    UNSUBSCRIBE_LINK = "unsubscribe_link"  # the one-click link of an optional mail
    REQUEST = "request"  # a data-subject request (an objection approved by a privacy officer)


class ConsentRecord(Base):
    """One choice about one purpose: given or withdrawn. Purposes are `communication:<channel>:<topic>`."""

    __tablename__ = "consent_records"
    __table_args__ = (
        tenant_fk("consent_records", "patron_id", "patrons", "patron"),
        CheckConstraint("method IN ('portal', 'staff', 'form', 'unsubscribe_link', 'request')", name="method_known"),
        CheckConstraint(r"purpose ~ '^[a-z0-9_]+(:[a-z0-9_]+)*$'", name="purpose_is_a_name"),
        # Agreeing means agreeing to something shown: a consent given names the notice it was given under.
        CheckConstraint("NOT given OR notice_version IS NOT NULL", name="given_names_its_notice"),
        Index("ix_consent_records_latest", "tenant_id", "patron_id", "purpose", "seq"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), info=ORDER)
    patron_id: Mapped[uuid.UUID]
    purpose: Mapped[str] = mapped_column(String(100), info=STATE)
    given: Mapped[bool] = mapped_column(Boolean, info=CHOSEN)
    method: Mapped[str] = mapped_column(String(16), info=STATE)
    notice_version: Mapped[str | None] = mapped_column(String(40), info=NOTICE)
    recorded_by: Mapped[uuid.UUID | None]  # the principal that recorded it; None for an unsubscribe link
    request_id: Mapped[uuid.UUID | None]  # the data-subject request it carries out, if any
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=CLOCK)


class CookieChoice(Base):
    """The portal's cookie choice of one browser (a random visitor id kept in a cookie), and of the
    patron when one is signed in. Strictly necessary cookies are always on and so not recorded."""

    __tablename__ = "cookie_choices"
    __table_args__ = (
        tenant_fk("cookie_choices", "patron_id", "patrons", "patron"),
        Index("ix_cookie_choices_visitor", "tenant_id", "visitor_id", "seq"),
        Index("ix_cookie_choices_patron", "tenant_id", "patron_id", "seq"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), info=ORDER)
    visitor_id: Mapped[uuid.UUID] = mapped_column(
        info=pseudonymous("random id of a browser, kept in its own cookie; names nobody without it")
    )
    patron_id: Mapped[uuid.UUID | None]
    analytics: Mapped[bool] = mapped_column(Boolean, info=CHOSEN)
    preferences: Mapped[bool] = mapped_column(Boolean, info=CHOSEN)
    notice_version: Mapped[str] = mapped_column(String(40), info=NOTICE)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=CLOCK)


class Objection(Base):
    """An objection (GDPR art. 21; the statement's opt-out "at the point of disclosure") or its withdrawal.

    scope: `third_party_disclosure`, or `purpose:<name>` for a purpose materially different from the
    one the data was collected for."""

    __tablename__ = "objections"
    __table_args__ = (
        tenant_fk("objections", "patron_id", "patrons", "patron"),
        CheckConstraint(r"scope = 'third_party_disclosure' OR scope ~ '^purpose:[a-z0-9_]{1,80}$'", name="scope_known"),
        Index("ix_objections_latest", "tenant_id", "patron_id", "scope", "seq"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), info=ORDER)
    patron_id: Mapped[uuid.UUID]
    scope: Mapped[str] = mapped_column(String(100), info=STATE)
    objected: Mapped[bool] = mapped_column(Boolean, info=CHOSEN)  # False: the objection is withdrawn
    request_id: Mapped[uuid.UUID | None]  # the objection request (privacy requests) it carries out
    recorded_by: Mapped[uuid.UUID | None]
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=CLOCK)


__all__ = ["ConsentMethod", "ConsentRecord", "CookieChoice", "Objection"]
