"""The backup catalogue and the drill history: platform tables (seen only without tenant context).

They name backups, files, sizes and checksums, never a value from the data: a tenant backup names
its institution's id, as the job queue does.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, MACHINE, STATE, SubjectKind, not_personal, subject_link
from bookwarden.db.base import Base

# The institution is the controller, a legal person: its names are not personal data (tenancy/models.py).
INSTITUTION = not_personal("names the institution (the controller), not a person")
CHECK = not_personal("checksums, step names and findings about a backup's files, never a value of the data")


class BackupKind(enum.StrEnum):
    PLATFORM = "platform"  # the data database (pg_dump -Fc), the file areas, the configuration
    TENANT = "tenant"  # one institution's rows, in one snapshot
    KEYRING = "keyring"  # the keyring database, kept apart and for a shorter time


class BackupStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"  # its manifest is signed and written; only these are restored or drilled
    FAILED = "failed"  # interrupted or refused; its files are removed
    REMOVED = "removed"  # expired under retention; files removed, the row kept as history


class DrillOutcome(enum.StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class Backup(Base):
    __tablename__ = "backups"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[BackupKind] = mapped_column(String(16), info=STATE)
    # The institution of a tenant backup. Not `tenant_id`: this is no tenant-scoped row (a tenant backup
    # must not hold the catalogue), and no foreign key: a backup outlives the institution's rows (offboarding).
    institution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=MACHINE)
    status: Mapped[BackupStatus] = mapped_column(String(16), default=BackupStatus.RUNNING, info=STATE)
    directory: Mapped[str] = mapped_column(Text, info=MACHINE)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger, info=COUNTER)
    chunks: Mapped[int | None] = mapped_column(Integer, info=COUNTER)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64), info=CHECK)
    master_key_id: Mapped[str | None] = mapped_column(String(16), info=MACHINE)
    error: Mapped[str | None] = mapped_column(Text, info=CHECK)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BackupDrill(Base):
    __tablename__ = "backup_drills"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    backup_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backups.id"), info=MACHINE)
    keyring_backup_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("backups.id"), info=MACHINE)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[DrillOutcome] = mapped_column(String(16), default=DrillOutcome.RUNNING, info=STATE)
    # Each step in order: {"step", "ok", "detail", "seconds"}.
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, info=CHECK)
    failure: Mapped[str | None] = mapped_column(Text, info=CHECK)


class OffboardingState(enum.StrEnum):
    """The steps of an offboarding, in order; each is recorded once done, so a run resumes where one died."""

    REQUESTED = "requested"  # waiting for a second operator's approval
    APPROVED = "approved"
    EXPORTED = "exported"  # the final export made and its link mailed; the grace period runs
    KEYS_DESTROYED = "keys_destroyed"
    ROWS_DELETED = "rows_deleted"
    FILES_WIPED = "files_wiped"
    CERTIFIED = "certified"  # the signed certificate of destruction issued: done
    CANCELLED = "cancelled"


# Until the export's grace period ends, an operator can still stop it.
CANCELLABLE = frozenset({OffboardingState.REQUESTED, OffboardingState.APPROVED, OffboardingState.EXPORTED})
OPEN = frozenset(OffboardingState) - {OffboardingState.CERTIFIED, OffboardingState.CANCELLED}
OPERATOR = subject_link(SubjectKind.OPERATOR, "the operator account or token that asked, approved or cancelled")


class Offboarding(Base):
    """One institution's offboarding: a platform row that outlives the institution (its certificate's home)."""

    __tablename__ = "offboardings"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # No foreign key: the institution's row is deleted by the offboarding this row records.
    institution_id: Mapped[uuid.UUID] = mapped_column(Uuid, info=MACHINE)
    institution_slug: Mapped[str] = mapped_column(String(63), info=INSTITUTION)
    institution_name: Mapped[str] = mapped_column(String(200), info=INSTITUTION)
    state: Mapped[OffboardingState] = mapped_column(String(16), default=OffboardingState.REQUESTED, info=STATE)
    wipe_method: Mapped[str] = mapped_column(String(32), info=STATE)
    grace_days: Mapped[int] = mapped_column(Integer, info=COUNTER)
    approval_id: Mapped[uuid.UUID] = mapped_column(Uuid, info=MACHINE)
    requested_by: Mapped[uuid.UUID] = mapped_column(Uuid, info=OPERATOR)
    requested_by_person: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=OPERATOR)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    approved_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=OPERATOR)
    approved_by_person: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=OPERATOR)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    export_sha256: Mapped[str | None] = mapped_column(String(64), info=CHECK)
    export_bytes: Mapped[int | None] = mapped_column(BigInteger, info=COUNTER)
    link_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    grace_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=OPERATOR)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What each destruction step found and did, written once (the first run that did it): counts, never data.
    steps: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, info=CHECK)
    # The signed certificate of destruction, as issued (canonical JSON of its envelope).
    certificate: Mapped[str | None] = mapped_column(Text, info=CHECK)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
