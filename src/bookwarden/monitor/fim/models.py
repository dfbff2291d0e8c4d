"""File-integrity tables: platform tables (seen only without tenant context, as backups are).

They name the platform's own files (paths under the application, its configuration and its key folder), their
hashes and metadata: never a value of any institution's data.
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
    Integer,
    LargeBinary,
    String,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, MACHINE, STATE, not_personal, pseudonymous
from bookwarden.db.base import Base

FILES = not_personal("the platform's own files: paths, hashes and metadata, never a value of the data")


class BaselineStatus(enum.StrEnum):
    PROPOSED = "proposed"  # scanned and signed, waiting for a second operator
    ACTIVE = "active"  # what scans compare with (one at most)
    SUPERSEDED = "superseded"  # was active; its entries are dropped, its row kept as history
    REJECTED = "rejected"


class FimBaseline(Base):
    __tablename__ = "fim_baselines"
    __table_args__ = (
        CheckConstraint("decided_by IS NULL OR decided_by <> proposed_by", name="checker_is_not_maker"),
        CheckConstraint(
            "decided_by_person IS NULL OR proposed_by_person IS NULL OR decided_by_person <> proposed_by_person",
            name="checker_is_not_maker_person",
        ),
        CheckConstraint("status IN ('proposed', 'active', 'superseded', 'rejected')", name="known_status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), info=STATE)
    algorithm: Mapped[str] = mapped_column(String(16), info=STATE)
    roots: Mapped[list[str]] = mapped_column(JSONB, info=FILES)
    entries: Mapped[int] = mapped_column(Integer, info=COUNTER)
    # What is signed: the digest of every entry in path order (service.entries_digest), bound to the id,
    # the algorithm, the roots and the count (service.statement).
    entries_digest: Mapped[bytes] = mapped_column(LargeBinary, info=FILES)
    key_id: Mapped[str] = mapped_column(String(64), info=MACHINE)
    signature: Mapped[bytes] = mapped_column(LargeBinary, info=FILES)
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    proposed_by: Mapped[uuid.UUID] = mapped_column(Uuid, info=pseudonymous("the operator credential that proposed"))
    proposed_by_person: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, info=pseudonymous("the operator account behind the proposing credential")
    )
    decided_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("the operator who decided"))
    decided_by_person: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, info=pseudonymous("the operator account behind the deciding credential")
    )
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FimPage(Base):
    """A page of a baseline's entries: up to PAGE records (monitor/fim/scan.py `Entry.record`: path, kind, content
    hash, size, mode, owner, group, inode, mtime, ctime), in path order. The signature covers exactly these bytes,
    pages in order, so what is verified before a scan is what is stored; a baseline of 20,000 files is ten rows."""

    __tablename__ = "fim_pages"

    baseline_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("fim_baselines.id", ondelete="CASCADE"), primary_key=True, info=MACHINE
    )
    page: Mapped[int] = mapped_column(Integer, primary_key=True, info=COUNTER)
    records: Mapped[bytes] = mapped_column(LargeBinary, info=FILES)


class HostCheck(enum.StrEnum):
    FIM = "fim"
    ROOTCHECK = "rootcheck"


class HostScan(Base):
    """One run of a host check (a file-integrity scan or a rootcheck): when, how, what it found."""

    __tablename__ = "host_scans"
    __table_args__ = (CheckConstraint("check_kind IN ('fim', 'rootcheck')", name="known_check"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    check_kind: Mapped[str] = mapped_column(String(16), info=STATE)
    baseline_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=MACHINE)
    full: Mapped[bool] = mapped_column(Boolean, default=False, info=STATE)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    files: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    hashed: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    findings: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    # The findings themselves, at most service.KEPT_FINDINGS: {"action", "path", "changed", ...}.
    details: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, info=FILES)
    run_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("the operator or job that ran it"))
