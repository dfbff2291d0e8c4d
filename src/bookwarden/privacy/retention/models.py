"""Retention as data: each tenant's keep-for periods, legal holds, purge runs and their counts,
and the tenant's self-registration setting (the age gate's switch).

A period row exists only where the tenant chose its own; without one, the registry's default
applies (privacy/retention/service.py). A hold names a patron, a category, or both; it is active until
lifted or until its `held_until` passes, and nothing it covers is purged or erased meanwhile. A purge run
keeps one count row per category, updated in the same transaction as each batch it removes, so the
report always says exactly what was committed, even after a crash mid-run.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, SETTING, STATE, not_personal
from bookwarden.db.base import Base, tenant_fk
from bookwarden.library.models import Patron  # noqa: F401 - target of the patron foreign key


class RetentionCategory(enum.StrEnum):
    """What a keep-for period applies to."""

    LOAN_HISTORY = "loan_history"  # returned loans
    SEARCHES = "searches"
    POSTS = "posts"
    INACTIVE_PATRONS = "inactive_patrons"
    EXPORTS = "exports"  # bulk patron export approvals, subject access packages
    AUDIT_SEGMENTS = "audit_segments"  # sealed segments of the tenant's own audit chain


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"


CATEGORY_CHECK = "category IN ({})".format(", ".join(f"'{c.value}'" for c in RetentionCategory))


class RetentionPolicy(Base):
    __tablename__ = "retention_policies"
    __table_args__ = (
        CheckConstraint(CATEGORY_CHECK, name="category_known"),
        CheckConstraint("keep_days IS NULL OR keep_days > 0", name="keep_days_positive"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True, info=STATE)
    keep_days: Mapped[int | None] = mapped_column(Integer, info=SETTING)  # None: kept until deleted
    approval_id: Mapped[uuid.UUID | None]  # the maker-checker request it was set under
    changed_by: Mapped[uuid.UUID]
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LegalHold(Base):
    __tablename__ = "legal_holds"
    __table_args__ = (
        tenant_fk("legal_holds", "patron_id", "patrons", "patron"),
        CheckConstraint(f"category IS NULL OR {CATEGORY_CHECK}", name="category_known"),
        CheckConstraint("patron_id IS NOT NULL OR category IS NOT NULL", name="holds_something"),
        CheckConstraint("(lifted_at IS NULL) = (lifted_by IS NULL)", name="lifted_by_someone"),
        CheckConstraint("held_until IS NULL OR held_until > placed_at", name="until_after_placed"),
        Index("ix_legal_holds_active", "tenant_id", "patron_id", postgresql_where=text("lifted_at IS NULL")),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    patron_id: Mapped[uuid.UUID | None]  # None: every patron's data of `category`
    category: Mapped[str | None] = mapped_column(String(32), info=STATE)  # None: every category of the patron
    reason: Mapped[str] = mapped_column(
        String(500),
        info=not_personal("the matter the hold serves (a case or court reference), refused if it looks like card data"),
    )
    placed_by: Mapped[uuid.UUID]
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    held_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=SETTING)  # None: until lifted
    lifted_by: Mapped[uuid.UUID | None]
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RetentionRun(Base):
    __tablename__ = "retention_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'completed')", name="status_known"),
        CheckConstraint("(status = 'completed') = (finished_at IS NOT NULL)", name="finished_when_completed"),
        # At most one unfinished run per tenant: the one a restarted purge resumes.
        Index("uq_retention_runs_running", "tenant_id", unique=True, postgresql_where=text("status = 'running'")),
        Index("ix_retention_runs_started", "tenant_id", "started_at"),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    triggered_by: Mapped[str] = mapped_column(String(16), info=STATE)  # schedule, console
    # The moment every cutoff is computed from, fixed at the start: a resumed run removes what the
    # interrupted one would have, no more.
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True), info=SETTING)
    status: Mapped[str] = mapped_column(String(16), info=STATE)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resumed: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)  # times picked up after a crash
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RetentionRunCount(Base):
    __tablename__ = "retention_run_counts"
    __table_args__ = (
        tenant_fk("retention_run_counts", "run_id", "retention_runs", "run"),
        CheckConstraint(CATEGORY_CHECK, name="category_known"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True, info=STATE)
    keep_days: Mapped[int | None] = mapped_column(Integer, info=SETTING)
    cutoff: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=SETTING)
    removed: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    held: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    errors: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    last_error: Mapped[str | None] = mapped_column(
        String(200), info=not_personal("the kind of the last error (an exception class, a problem slug)")
    )
    done: Mapped[bool] = mapped_column(Boolean, default=False, info=STATE)


class SelfRegistrationSetting(Base):
    """Whether people may register themselves as patrons of this institution (off by default)."""

    __tablename__ = "self_registration_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False, info=SETTING)
    # The institution's time zone (IANA name): whose calendar says when someone turns 13.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", info=SETTING)
    changed_by: Mapped[uuid.UUID]
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
