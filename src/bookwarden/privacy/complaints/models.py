"""Complaints about the handling of personal data: one row each, its deadlines stored with it.

What the complainant wrote, the answer and the address to answer to are sealed under the
institution's own key (like the outbox), not the patron's subject key: the institution must be
able to answer and show how it answered whatever happens to the patron's other data. The row
goes with its patron or account (tenant foreign keys, ON DELETE CASCADE), as everything about
them does. The deadlines are columns, set from the database clock when the complaint arrives,
so a recurring job (privacy/complaints/service.py) finds what is due; nothing waits in memory.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, LargeBinary, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import STATE, Category, Protection, personal
from bookwarden.db.base import Base, tenant_fk
from bookwarden.identity.models import Account  # noqa: F401 - target of the account foreign key
from bookwarden.library.models import Patron  # noqa: F401 - target of the patron foreign key

SEALED = personal(Category.COMPLAINTS, Protection.TENANT_KEY)


class ComplaintStatus(enum.StrEnum):
    OPEN = "open"
    ANSWERED = "answered"


class ComplaintChannel(enum.StrEnum):
    PATRON = "patron"  # the patron, signed in to the portal
    STAFF = "staff"  # staff, on the patron's behalf (at the desk, by phone, by letter)


class Complaint(Base):
    __tablename__ = "complaints"
    __table_args__ = (
        tenant_fk("complaints", "patron_id", "patrons", "patron"),
        tenant_fk("complaints", "account_id", "accounts", "account"),
        CheckConstraint("patron_id IS NOT NULL OR account_id IS NOT NULL", name="has_subject"),
        CheckConstraint("status IN ('open', 'answered')", name="status_known"),
        CheckConstraint("channel IN ('patron', 'staff')", name="channel_known"),
        CheckConstraint(
            "(status = 'answered') = (answer IS NOT NULL AND answered_at IS NOT NULL AND answered_by IS NOT NULL)",
            name="answered_has_answer",
        ),
        CheckConstraint(
            "created_at < ack_due_at AND ack_due_at <= at_risk_at AND at_risk_at < due_at", name="deadlines_in_order"
        ),
        Index("ix_complaints_open", "tenant_id", "due_at", postgresql_where=text("status = 'open'")),
        Index("ix_complaints_patron", "tenant_id", "patron_id"),
        Index("ix_complaints_account", "tenant_id", "account_id"),
    )
    # created_at and the deadlines come from the database clock; fetch them on INSERT.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    patron_id: Mapped[uuid.UUID | None]
    account_id: Mapped[uuid.UUID | None]  # the patron's own account, when they registered it themselves
    channel: Mapped[str] = mapped_column(String(16), info=STATE)
    registered_by: Mapped[uuid.UUID]  # the principal that registered it (the patron's account, or staff)
    subject: Mapped[bytes] = mapped_column(LargeBinary, info=SEALED)
    body: Mapped[bytes] = mapped_column(LargeBinary, info=SEALED)
    contact_address: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CONTACT, Protection.TENANT_KEY))
    answer: Mapped[bytes | None] = mapped_column(LargeBinary, info=SEALED)
    status: Mapped[str] = mapped_column(String(16), info=STATE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ack_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    at_risk_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ack_message_id: Mapped[uuid.UUID | None]  # the acknowledgement in the outbox (no foreign key: mail is purged)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ack_escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    at_risk_escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    overdue_escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_by: Mapped[uuid.UUID | None]
