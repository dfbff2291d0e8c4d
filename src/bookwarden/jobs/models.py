"""The job queue's tables: platform tables (no tenant_id, no row-level security).

A job for one tenant names it in its payload (payload["tenant_id"]); the handler opens that
tenant's session itself, so the queue never needs a tenant context to be claimed.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import COUNTER, MACHINE, SETTING, STATE, pseudonymous
from bookwarden.db.base import Base

# Payloads carry ids only (tenant, message, subject): never an address or any other personal value.
IDS_ONLY = pseudonymous("ids only (tenant, message, subject), never personal values")


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The "next runnable job" query filters on status and orders by run_at.
        Index("ix_jobs_status_run_at", "status", "run_at"),
        CheckConstraint("kind <> ''", name="kind_not_empty"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        # A running job without a lease could never be recovered after a worker crash.
        CheckConstraint(
            "status <> 'running' OR (locked_by IS NOT NULL AND locked_until IS NOT NULL)",
            name="running_has_lease",
        ),
    )
    # run_at and created_at come from the database clock; fetch them on INSERT so a returned
    # Job is complete even after its session has closed.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, info=MACHINE)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"), info=IDS_ONLY)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="job_status", values_callable=lambda e: [m.value for m in e]),
        default=JobStatus.QUEUED,
        info=STATE,
    )
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5, info=COUNTER)
    last_error: Mapped[str | None] = mapped_column(Text, info=MACHINE)  # describe_error: never a traceback
    locked_by: Mapped[str | None] = mapped_column(Text, info=MACHINE)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=MACHINE)  # the lease
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobSchedule(Base):
    """A recurring job: `tick_schedules` enqueues one `kind` job each time next_run_at passes."""

    __tablename__ = "job_schedules"
    __table_args__ = (
        CheckConstraint("every_seconds > 0", name="every_seconds_positive"),
        CheckConstraint("kind <> ''", name="kind_not_empty"),
    )

    name: Mapped[str] = mapped_column(Text, primary_key=True, info=MACHINE)
    kind: Mapped[str] = mapped_column(Text, info=MACHINE)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"), info=SETTING)
    every_seconds: Mapped[int] = mapped_column(Integer, info=SETTING)
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(default=True, server_default=text("true"), info=SETTING)
