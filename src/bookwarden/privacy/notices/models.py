"""The institution's privacy notice: one row per published version, and a receipt per collection.

A version is never changed once published (the application may only set the progress of its change
mail), so what a patron was shown can always be read back. The version in force is the latest
published (`seq`, a database sequence). A receipt records which version was in force when data was
collected from a self-registration or the request form; it goes with the patron (and the request)
it was collected for. Cookie choices and consent records carry the version label on their own rows
(privacy/consent/models.py).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, STATE, not_personal, pseudonymous
from bookwarden.db.base import Base, tenant_fk
from bookwarden.library.models import Patron  # noqa: F401 - target of the patron foreign key

ORDER = not_personal("order of publication: a database sequence")
PUBLISHED = not_personal("the institution's privacy notice as published to everyone: public text, about nobody")
LABEL = not_personal("the label the institution gives a version of its notice")


class Collection(enum.StrEnum):
    """Where data was collected under a notice, for the receipts table (the other two carry it on their rows)."""

    SELF_REGISTRATION = "self_registration"
    REQUEST_FORM = "request_form"


class PrivacyNoticeVersion(Base):
    __tablename__ = "privacy_notice_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "version", name="uq_privacy_notice_versions_version"),
        # A material change tells patrons what changed: the mail quotes it.
        CheckConstraint("NOT material OR change_summary IS NOT NULL", name="material_says_what_changed"),
        CheckConstraint("mailed >= 0", name="mailed_counted"),
        Index("ix_privacy_notice_versions_latest", "tenant_id", "seq"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), info=ORDER)
    version: Mapped[str] = mapped_column(String(40), info=LABEL)
    notice_text: Mapped[str] = mapped_column(Text, info=PUBLISHED)
    last_updated: Mapped[date] = mapped_column(Date, info=not_personal("the date the notice says it was last updated"))
    material: Mapped[bool] = mapped_column(Boolean, info=STATE)
    change_summary: Mapped[str | None] = mapped_column(Text, info=PUBLISHED)
    published_by: Mapped[uuid.UUID]  # the principal that published it
    published_by_person: Mapped[uuid.UUID | None]  # the person behind that credential (None: the console, a service)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    # The material-change mail, batch by batch (privacy/notices/service.py mail_change): the last patron id
    # done, how many were queued, and when every patron had been gone through. Resumable from the cursor.
    mail_cursor: Mapped[uuid.UUID | None] = mapped_column(
        info=pseudonymous("the last patron id the change mail has gone through (ids in order)")
    )
    mailed: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    mail_done_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), info=not_personal("when the change mail had gone through every patron")
    )


class NoticeReceipt(Base):
    """Which version was in force when data was collected from someone (the version shown in the answer)."""

    __tablename__ = "privacy_notice_receipts"
    __table_args__ = (
        tenant_fk("privacy_notice_receipts", "version_id", "privacy_notice_versions", "version"),
        tenant_fk("privacy_notice_receipts", "patron_id", "patrons", "patron"),
        tenant_fk("privacy_notice_receipts", "request_id", "privacy_requests", "request"),
        CheckConstraint("collection IN ('self_registration', 'request_form')", name="collection_known"),
        Index("ix_privacy_notice_receipts_patron", "tenant_id", "patron_id"),
        Index("ix_privacy_notice_receipts_request", "tenant_id", "request_id"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    version_id: Mapped[uuid.UUID]
    collection: Mapped[str] = mapped_column(String(32), info=STATE)
    patron_id: Mapped[uuid.UUID]
    request_id: Mapped[uuid.UUID | None]  # the data-subject request the form made, if any
    collected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
