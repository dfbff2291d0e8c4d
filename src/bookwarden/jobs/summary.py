"""Whether scheduled duties run on schedule: for the live evidence that every period the platform publishes
is enforced (each such job has a schedule, enabled, not overdue, and its last run did not fail)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookwarden.jobs.models import Job, JobSchedule, JobStatus

# A run is due at next_run_at; the worker claims it within seconds. Past one more interval it was missed.
LATE_AFTER_INTERVALS = 1


def schedule_problems(session: Session, kinds: Iterable[str], now: datetime) -> list[str]:
    """One line per job kind among `kinds` that is not running on schedule (a platform session)."""
    problems = []
    for kind in sorted(set(kinds)):
        schedules = list(session.scalars(select(JobSchedule).where(JobSchedule.kind == kind)))
        if not schedules:
            problems.append(f"{kind}: no schedule (the worker declares it at start)")
            continue
        for found in schedules:
            if not found.enabled:
                problems.append(f"{kind}: schedule {found.name} is paused")
            elif found.next_run_at < now - timedelta(seconds=found.every_seconds * LATE_AFTER_INTERVALS):
                problems.append(f"{kind}: due since {found.next_run_at:%Y-%m-%d %H:%M} UTC and not run")
        last = session.scalars(
            select(Job)
            .where(Job.kind == kind, Job.status.in_([JobStatus.SUCCEEDED, JobStatus.FAILED]))
            .order_by(Job.finished_at.desc().nulls_last())
            .limit(1)
        ).first()
        if last is not None and last.status == JobStatus.FAILED:
            problems.append(f"{kind}: its last run failed ({last.last_error or 'no reason kept'})")
    return problems
