"""Concerns: reports that someone reached an account without authority, or that a child's data is held.

What the reporter wrote and the address to answer them at are sealed under the institution's own key (as
complaints are): the institution must be able to act on a report whatever happens to any one subject's
data. A report made by a signed-in patron names their account and goes with it (tenant foreign key, ON
DELETE CASCADE); an anonymous report names nobody but its contact address. Every report is deleted two
years after it was received (privacy/concerns/jobs.py).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import STATE, Category, Protection, personal
from bookwarden.db.base import Base, tenant_fk
from bookwarden.identity.models import Account  # noqa: F401 - target of the account foreign key


class ConcernKind(enum.StrEnum):
    UNAUTHORISED_ACCESS = "unauthorised_access"  # someone reached an account (theirs or another's) without authority
    CHILD_DATA = "child_data"  # the institution holds data about a child (under 13) without a guardian's consent


class ConcernChannel(enum.StrEnum):
    PATRON = "patron"  # a patron signed in to the portal
    ANONYMOUS = "anonymous"  # the open form: anyone, with an address to be answered at


class Concern(Base):
    __tablename__ = "privacy_concerns"
    __table_args__ = (
        tenant_fk("privacy_concerns", "account_id", "accounts", "account"),
        CheckConstraint("kind IN ('unauthorised_access', 'child_data')", name="kind_known"),
        CheckConstraint("channel IN ('patron', 'anonymous')", name="channel_known"),
        CheckConstraint("(channel = 'patron') = (account_id IS NOT NULL)", name="patron_names_account"),
        Index("ix_privacy_concerns_received", "tenant_id", "received_at"),
        Index("ix_privacy_concerns_account", "tenant_id", "account_id"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(32), info=STATE)
    channel: Mapped[str] = mapped_column(String(16), info=STATE)
    account_id: Mapped[uuid.UUID | None]  # the signed-in patron's account that reported it
    description: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CONCERNS, Protection.TENANT_KEY))
    contact_address: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.CONTACT, Protection.TENANT_KEY))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set by the incidents area's hook when it opens an incident from the report (service.py OPEN_INCIDENT).
    incident_id: Mapped[uuid.UUID | None]
