"""Tables of the hosted domain.

Every table carries tenant_id in its primary key and foreign keys (row-level security and
Citus co-location). Every column says what it holds (core/classification.py): `personal(...)`
columns hold AES-256-GCM ciphertext under the patron's subject key; `blind_index(...)` columns
hold blind indexes for exact lookups.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    DateTime,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import CATALOGUE, STATE, Category, blind_index, not_personal, personal
from bookwarden.db.base import Base, tenant_fk
from bookwarden.tenancy.models import Tenant  # noqa: F401 - target of the tenant foreign keys


def _tenant_id() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("tenants.id"), primary_key=True)


class PatronStatus(enum.StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    EXPIRED = "expired"


class Patron(Base):
    __tablename__ = "patrons"
    __table_args__ = (
        UniqueConstraint("tenant_id", "institutional_id_index"),
        UniqueConstraint("tenant_id", "barcode_index"),
        Index("ix_patrons_email_index", "tenant_id", "email_index"),
        Index(
            "ix_patrons_deletion_due",
            "tenant_id",
            "deletion_due_at",
            postgresql_where=text("deletion_due_at IS NOT NULL"),
        ),
        Index(
            "ix_patrons_email_unconfirmed",
            "tenant_id",
            "email_unconfirmed_until",
            postgresql_where=text("email_unconfirmed_until IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.IDENTITY))
    email: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CONTACT))
    phone: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CONTACT))
    postal_address: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CONTACT))
    institutional_id: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.INSTITUTIONAL_ID))
    affiliation: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.AFFILIATION))
    birth_date: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.IDENTITY))
    barcode: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.INSTITUTIONAL_ID))
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary, info=blind_index("email"))
    institutional_id_index: Mapped[bytes | None] = mapped_column(LargeBinary, info=blind_index("institutional_id"))
    barcode_index: Mapped[bytes | None] = mapped_column(LargeBinary, info=blind_index("barcode"))
    status: Mapped[PatronStatus] = mapped_column(
        Enum(PatronStatus, name="patron_status", values_callable=lambda e: [m.value for m in e]),
        default=PatronStatus.ACTIVE,
        info=STATE,
    )
    # Set while the address on the record is only what someone typed into self-registration: until its owner
    # confirms it (privacy/registration/service.py) it is nobody's, so nothing is sent to it and it identifies
    # no one to the request form; at this time the registration lapses. Null: the owner confirmed it, or the
    # institution's staff entered it (they vouch for it).
    email_unconfirmed_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        info=not_personal("when an unconfirmed self-registration lapses; null once its address counts"),
    )
    # Set while staff's deletion of the patron waits (library/deletion.py): hidden from every read and frozen,
    # the subject key kept; at this time the key and the rows are destroyed if a second person confirmed,
    # or the deletion lapses if nobody did. Null: not being deleted.
    deletion_due_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        info=not_personal("when a pending deletion by staff is carried out or lapses; null when none is pending"),
    )
    # The maker-checker request (approval_requests) the pending deletion waits on: who asked, who confirmed.
    deletion_approval_id: Mapped[uuid.UUID | None] = mapped_column(
        info=not_personal("the id of the approval request a pending deletion waits on")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Loan(Base):
    __tablename__ = "loans"
    __table_args__ = (
        tenant_fk("loans", "patron_id", "patrons", "patron"),
        Index("ix_loans_patron", "tenant_id", "patron_id"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    patron_id: Mapped[uuid.UUID]
    item_id: Mapped[str] = mapped_column(String(64), info=CATALOGUE)
    # What a patron reads is as personal as who they are: the title is encrypted like a name.
    item_title: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CIRCULATION_HISTORY))
    borrowed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    returned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Search(Base):
    __tablename__ = "searches"
    __table_args__ = (
        tenant_fk("searches", "patron_id", "patrons", "patron"),
        Index("ix_searches_patron", "tenant_id", "patron_id"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    patron_id: Mapped[uuid.UUID]
    query: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.SEARCH_HISTORY))
    searched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReadingList(Base):
    __tablename__ = "reading_lists"
    __table_args__ = (
        tenant_fk("reading_lists", "patron_id", "patrons", "patron"),
        Index("ix_reading_lists_patron", "tenant_id", "patron_id"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    patron_id: Mapped[uuid.UUID]
    title: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.READING_LISTS))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReadingListItem(Base):
    __tablename__ = "reading_list_items"
    __table_args__ = (
        tenant_fk("reading_list_items", "list_id", "reading_lists", "list"),
        Index("ix_reading_list_items_list", "tenant_id", "list_id"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    list_id: Mapped[uuid.UUID]
    item_id: Mapped[str] = mapped_column(String(64), info=CATALOGUE)
    note: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.READING_LISTS))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        tenant_fk("posts", "patron_id", "patrons", "patron"),
        Index("ix_posts_patron", "tenant_id", "patron_id"),
    )

    tenant_id: Mapped[uuid.UUID] = _tenant_id()
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    patron_id: Mapped[uuid.UUID]
    board: Mapped[str] = mapped_column(String(64), info=CATALOGUE)
    body: Mapped[bytes] = mapped_column(LargeBinary, info=personal(Category.USER_CONTENT))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
