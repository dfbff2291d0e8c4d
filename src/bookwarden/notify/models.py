"""The outbox: one row per outbound mail of a tenant (RLS-protected like every tenant table).

Recipient, subject and body name people, so they are AES-256-GCM ciphertext under the
tenant's data key (not a subject key: a notice must stay deliverable even if the person it is
about is erased meanwhile). Headers stay readable: they hold URLs and flags, never personal data.
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
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
)
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

SEALED = Protection.TENANT_KEY


class MailCategory(enum.StrEnum):
    SERVICE = "service"  # the service needs it sent (codes, acknowledgements): no unsubscribe
    SECURITY = "security"  # entitlement changes, breach notices: can never be muted
    OPTIONAL = "optional"  # anything else: carries an RFC 8058 one-click unsubscribe


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


def _text_enum(cls: type[enum.StrEnum]) -> Enum:
    # Plain text with a CHECK (in the migration), not a PostgreSQL enum type: a new category
    # is then a constraint swap rather than ALTER TYPE.
    return Enum(
        cls, native_enum=False, create_constraint=False, length=16, values_callable=lambda e: [m.value for m in e]
    )


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("category IN ('service', 'security', 'optional')", name="category_known"),
        CheckConstraint("status IN ('queued', 'sent', 'failed')", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint(
            "(status = 'sent') = (sent_at IS NOT NULL AND message_id IS NOT NULL)", name="sent_has_time_and_id"
        ),
        # The sweep looks for queued messages only; sent ones are the bulk of the table.
        Index("ix_outbox_queued", "send_after", postgresql_where=text("status = 'queued'")),
    )
    # created_at and send_after come from the database clock; fetch them on INSERT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    category: Mapped[MailCategory] = mapped_column(_text_enum(MailCategory), info=STATE)
    to_address: Mapped[bytes] = mapped_column(
        LargeBinary, info=personal(Category.CONTACT, SEALED, subject=SubjectKind.CONTACT)
    )
    subject: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CORRESPONDENCE, SEALED))
    body: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CORRESPONDENCE, SEALED))
    # The tenant data-key version the fields were sealed under: after a key rotation a
    # message sealed under a destroyed version is reported as such, not as tampering.
    key_version: Mapped[int] = mapped_column(Integer, info=MACHINE)
    headers: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb"), info=pseudonymous("URLs and flags, never an address")
    )
    status: Mapped[OutboxStatus] = mapped_column(_text_enum(OutboxStatus), default=OutboxStatus.QUEUED, info=STATE)
    attempts: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    # Error type and SMTP reply code only: a server's reply text may quote the recipient (delivery.py).
    last_error: Mapped[str | None] = mapped_column(Text, info=MACHINE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    send_after: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), info=not_personal("when delivery may start")
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The RFC 5322 Message-ID header the mail went out with (the row id is `id`).
    message_id: Mapped[str | None] = mapped_column(Text, info=MACHINE)
    # Deleted once sent or given up (notify/delivery.py): an erasure's confirmation must not keep the
    # address the erasure removed everywhere else.
    forget_when_settled: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false"), default=False, info=MACHINE
    )
