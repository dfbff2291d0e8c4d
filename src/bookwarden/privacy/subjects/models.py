"""Tables of a data subject's rights: access packages (sealed, expiring) and erasures (policy, certificates).

An access package is a ZIP of everything held about one patron, stored here in chunks, each sealed
(AES-256-GCM) under the package's own key: a key in the keyring wrapped by the tenant key, destroyed
when the package expires or its patron is erased, so a copy of these rows in a backup is unreadable
from then on. The download link's token is shown once; only its SHA-256 is kept.

An erasure certificate is the signed statement of what one erasure removed: ids, counts and
categories, never a personal value. It names the patron only by their random id, which no longer
leads anywhere once the patron row and key are gone, so it has no foreign key and survives them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, MACHINE, SETTING, Category, not_personal, personal, pseudonymous
from bookwarden.db.base import Base, tenant_fk
from bookwarden.library.models import Patron  # noqa: F401 - target of the patron foreign key

# The whole package is personal data of every category; it is filed under identity, the category
# every package holds, and sealed under a key of its own that the keyring destroys on expiry.
PACKAGE_BODY = personal(Category.IDENTITY)
TOKEN_HASH = not_personal("SHA-256 of the download link's random token: the token itself is never stored")


class SubjectExportPackage(Base):
    __tablename__ = "subject_export_packages"
    __table_args__ = (
        tenant_fk("subject_export_packages", "patron_id", "patrons", "patron"),
        UniqueConstraint("tenant_id", "token_hash"),
        Index("ix_subject_export_packages_patron", "tenant_id", "patron_id"),
        Index("ix_subject_export_packages_expires", "expires_at"),
        # One package per approval: an approval outside a data-subject request allows one build.
        Index(
            "uq_subject_export_packages_approval",
            "tenant_id",
            "approval_id",
            unique=True,
            postgresql_where=text("approval_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    patron_id: Mapped[uuid.UUID]
    request_id: Mapped[uuid.UUID | None]  # the data-subject request it answers, when one did
    approval_id: Mapped[uuid.UUID | None]  # else the maker-checker approval it was built under (one build)
    created_by: Mapped[uuid.UUID | None]  # the principal that built it
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, info=TOKEN_HASH)
    chunk_count: Mapped[int] = mapped_column(Integer, info=COUNTER)
    size_bytes: Mapped[int] = mapped_column(BigInteger, info=COUNTER)
    record_count: Mapped[int] = mapped_column(Integer, info=COUNTER)
    sha256: Mapped[bytes] = mapped_column(
        LargeBinary, info=not_personal("SHA-256 of the ZIP, checked on every download")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    downloads: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    last_downloaded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SubjectExportChunk(Base):
    __tablename__ = "subject_export_chunks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "package_id"],
            ["subject_export_packages.tenant_id", "subject_export_packages.id"],
            ondelete="CASCADE",
            name="fk_subject_export_chunks_package",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    package_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, info=COUNTER)
    body: Mapped[bytes] = mapped_column(LargeBinary, info=PACKAGE_BODY)


class ErasurePolicy(Base):
    """A tenant's choice for erasures; without a row, the default: everything is deleted."""

    __tablename__ = "erasure_policies"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    keep_posts_anonymized: Mapped[bool] = mapped_column(Boolean, default=False, info=SETTING)
    # The placeholder patron ("former member") that kept posts are moved to: no foreign key, it is
    # made again when missing.
    anonymous_author_id: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ErasureCertificate(Base):
    __tablename__ = "erasure_certificates"
    __table_args__ = (Index("ix_erasure_certificates_subject", "tenant_id", "subject_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    subject_id: Mapped[uuid.UUID] = mapped_column(
        info=pseudonymous("the erased patron's random id: it leads to nothing once their row and key are gone")
    )
    request_id: Mapped[uuid.UUID | None]
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    audit_seq: Mapped[int] = mapped_column(BigInteger, info=COUNTER)
    statement: Mapped[dict] = mapped_column(
        JSONB, info=pseudonymous("what was erased: tables, categories and counts; ids only, never a value")
    )
    key_id: Mapped[str] = mapped_column(String(16), info=MACHINE)
    signature: Mapped[bytes] = mapped_column(LargeBinary, info=not_personal("Ed25519 signature of the statement"))
