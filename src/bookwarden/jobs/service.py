"""Job queue use cases: enqueue, schedule, claim under a lease, record outcomes, purge.

Every function takes the caller's session and never commits: `enqueue` inside a business
transaction makes the job appear exactly when that transaction commits (and never if it
rolls back). Times come from the database clock (`now()`), the one clock every worker and
every HTTP process shares.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from bookwarden.core.clock import db_now
from bookwarden.core.errors import InvalidInput, NotFound
from bookwarden.db.session import Database
from bookwarden.jobs.models import Job, JobSchedule, JobStatus

Handler = Callable[[Database, dict[str, Any]], None]

MAX_ERROR_LENGTH = 2000
BACKOFF_CAP = timedelta(hours=1)

log = structlog.get_logger()

_handlers: dict[str, Handler] = {}
# Jitter only spreads retries of jobs that failed together; it protects nothing.
_jitter = random.Random()  # noqa: S311


class UnknownJobKind(LookupError):
    """No handler is registered for a claimed job's kind (recorded as a failed attempt)."""


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register `fn(db, payload)` as the code that runs jobs of `kind`.

    Handlers may run more than once for one job (a worker that outlives its lease is
    replaced), so they must be idempotent, as every multi-step duty already is.
    """
    _check_kind(kind)

    def register(fn: Handler) -> Handler:
        existing = _handlers.get(kind)
        if existing is not None and _qualified_name(existing) != _qualified_name(fn):
            raise ValueError(
                f"job kind {kind!r} already has handler {_qualified_name(existing)}; "
                f"refusing to replace it with {_qualified_name(fn)}"
            )
        _handlers[kind] = fn
        return fn

    return register


def handler_for(kind: str) -> Handler:
    try:
        return _handlers[kind]
    except KeyError:
        raise UnknownJobKind(
            f"no handler is registered for job kind {kind!r}; "
            "the module that declares it with @handler must be imported by the worker"
        ) from None


def backoff(attempt: int) -> timedelta:
    """Delay before retrying after failed attempt number `attempt` (1-based).

    2**attempt seconds capped at one hour, then "equal jitter" (a random point in the upper
    half) so jobs that failed together, e.g. during an outage, do not retry in lockstep.
    """
    ceiling = min(2.0 ** max(attempt, 1), BACKOFF_CAP.total_seconds())
    return timedelta(seconds=_jitter.uniform(ceiling / 2, ceiling))


def describe_error(exc: BaseException) -> str:
    """Type and message, truncated; never the traceback, which quotes the source lines and
    arguments around the failure and so may carry secrets into the table."""
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    max_attempts: int = 5,
) -> Job:
    """Add a job; it becomes visible to workers when the caller's transaction commits."""
    _check_kind(kind)
    payload = _checked_payload(payload)
    if max_attempts < 1:
        raise InvalidInput(f"max_attempts must be at least 1, got {max_attempts}")
    job = Job(kind=kind, payload=payload, status=JobStatus.QUEUED, attempts=0, max_attempts=max_attempts)
    if run_at is not None:
        job.run_at = _aware(run_at, "run_at")
    session.add(job)
    session.flush()
    return job


def schedule(
    session: Session,
    name: str,
    kind: str,
    every: timedelta,
    payload: dict[str, Any] | None = None,
    first_run_at: datetime | None = None,
) -> JobSchedule:
    """Declare a recurring job; idempotent, so the app declares its schedules at every start.

    A new schedule first runs at `first_run_at` (default: now). Re-declaring updates kind,
    payload and interval but keeps the pending run time, so restarts neither postpone a run
    nor trigger an extra one; a shorter interval pulls the next run in. `enabled` is left
    alone: a schedule an operator paused stays paused across restarts.
    """
    if not name:
        raise InvalidInput("schedule name must not be empty")
    _check_kind(kind)
    every_seconds = _whole_seconds(every)
    payload = _checked_payload(payload)
    first = _aware(first_run_at, "first_run_at") if first_run_at is not None else func.now()
    stmt = insert(JobSchedule).values(
        name=name, kind=kind, payload=payload, every_seconds=every_seconds, next_run_at=first, enabled=True
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[JobSchedule.name],
        set_={
            "kind": stmt.excluded.kind,
            "payload": stmt.excluded.payload,
            "every_seconds": stmt.excluded.every_seconds,
            "next_run_at": func.least(
                JobSchedule.next_run_at, func.now() + timedelta(seconds=1) * stmt.excluded.every_seconds
            ),
        },
    ).returning(JobSchedule)
    return session.scalars(stmt, execution_options={"populate_existing": True}).one()


def set_schedule_enabled(session: Session, name: str, enabled: bool) -> JobSchedule:
    """Pause or resume a schedule; a resumed schedule runs at its pending time, no catch-up burst."""
    found = session.get(JobSchedule, name, with_for_update=True)
    if found is None:
        raise NotFound(f"no job schedule named {name!r}")
    found.enabled = enabled
    return found


def claim_next(session: Session, worker: str, lease: timedelta) -> Job | None:
    """Lock the next runnable job and lease it to `worker`, or None when nothing is due.

    Runnable: queued and due, or running with an expired lease (its worker crashed or hung).
    SKIP LOCKED lets concurrent workers pass over each other's candidates instead of
    queueing behind them. A lost job that has used all its attempts is failed here,
    otherwise a job that kills its worker would be retried forever.
    """
    now = db_now(session)
    while True:
        job = session.scalars(_next_runnable()).first()
        if job is None:
            return None
        if job.status is JobStatus.RUNNING:
            lost = f"worker lost: the lease of {job.locked_by!r} expired during attempt {job.attempts}"
            log.warning(
                "job.lease_expired", job_id=job.id, kind=job.kind, attempt=job.attempts, lost_worker=job.locked_by
            )
            if job.attempts >= job.max_attempts:
                _finish(job, JobStatus.FAILED, now, lost)
                log.error(
                    "job.failed",
                    job_id=job.id,
                    kind=job.kind,
                    attempt=job.attempts,
                    outcome="worker_lost",
                    payload_keys=sorted(job.payload),
                )
                session.flush()
                continue
            job.last_error = lost
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.locked_by = worker
        job.locked_until = now + lease
        session.flush()
        return job


def record_success(session: Session, job_id: int, worker: str, attempt: int) -> bool:
    """Mark the job succeeded if `worker` still holds the lease of `attempt`; False if it lost it."""
    job = _leased(session, job_id, worker, attempt)
    if job is None:
        return False
    _finish(job, JobStatus.SUCCEEDED, db_now(session), job.last_error)
    return True


def record_failure(session: Session, job_id: int, worker: str, attempt: int, error: str) -> JobStatus | None:
    """Requeue the job after a backoff, or fail it for good once max_attempts is reached.

    Returns the job's new status, or None when `worker` no longer holds the lease (another
    worker took the job over; its outcome is the one that counts).
    """
    job = _leased(session, job_id, worker, attempt)
    if job is None:
        return None
    now = db_now(session)
    error = error[:MAX_ERROR_LENGTH]
    if job.attempts >= job.max_attempts:
        _finish(job, JobStatus.FAILED, now, error)
    else:
        job.status = JobStatus.QUEUED
        job.run_at = now + backoff(job.attempts)
        job.last_error = error
        job.locked_by = None
        job.locked_until = None
    return job.status


def release(session: Session, job_id: int, worker: str, attempt: int) -> bool:
    """Give back the job `worker` holds under `attempt`, due now, for another worker to take at once.

    For a worker that is stopping with the job unfinished: without this the job would wait for its
    lease to expire. The attempt keeps its number (the next claim takes the next one), so the lease
    of a later run is never mistaken for this one. False when the worker no longer held the lease.
    """
    job = _leased(session, job_id, worker, attempt)
    if job is None:
        return False
    job.status = JobStatus.QUEUED
    job.run_at = db_now(session)
    job.last_error = f"released unfinished by {worker!r} at shutdown during attempt {attempt}"
    job.locked_by = None
    job.locked_until = None
    return True


def enqueue_due_schedules(session: Session) -> list[Job]:
    """One job per enabled schedule whose time has come; each schedule moves to its next slot.

    A schedule that fell behind (workers were down) moves to now + every rather than
    stepping through every missed slot, so an outage never turns into a burst of jobs.
    SKIP LOCKED: a schedule another worker is ticking right now is theirs.
    """
    due = session.scalars(
        select(JobSchedule)
        .where(JobSchedule.enabled, JobSchedule.next_run_at <= func.now())
        .order_by(JobSchedule.next_run_at)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return []
    now = db_now(session)
    jobs = []
    for planned in due:
        jobs.append(enqueue(session, planned.kind, dict(planned.payload)))
        every = timedelta(seconds=planned.every_seconds)
        following = planned.next_run_at + every
        planned.next_run_at = following if following > now else now + every
    session.flush()
    return jobs


def purge_finished(session: Session, older_than: timedelta) -> int:
    """Delete succeeded and failed jobs finished more than `older_than` ago; returns how many.

    Payloads name tenants and data subjects, so finished jobs are kept only as long as
    someone may need to look into them.
    """
    result = session.execute(
        delete(Job).where(
            Job.status.in_([JobStatus.SUCCEEDED, JobStatus.FAILED]),
            Job.finished_at < func.now() - older_than,
        )
    )
    return result.rowcount


def _next_runnable() -> Select[tuple[Job]]:
    now = func.now()
    return (
        select(Job)
        .where(
            or_(
                and_(Job.status == JobStatus.QUEUED, Job.run_at <= now),
                and_(Job.status == JobStatus.RUNNING, Job.locked_until < now),
            )
        )
        .order_by(Job.run_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def _leased(session: Session, job_id: int, worker: str, attempt: int) -> Job | None:
    # The attempt number is part of the lease: a worker that reclaims its own expired job
    # (same name) must not let the stale run's outcome overwrite the new one.
    return session.scalars(
        select(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.RUNNING,
            Job.locked_by == worker,
            Job.attempts == attempt,
        )
        .with_for_update()
    ).first()


def _finish(job: Job, status: JobStatus, now: datetime, error: str | None) -> None:
    job.status = status
    job.finished_at = now
    job.last_error = error
    job.locked_by = None
    job.locked_until = None


def _check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not kind.strip():
        raise InvalidInput('job kind must be a non-empty string, e.g. "retention.purge"')


def _checked_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidInput(f"job payload must be a JSON object (dict), got {type(payload).__name__}")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"job payload must be JSON-serializable: {exc}") from None
    return payload


def _aware(moment: datetime, field: str) -> datetime:
    # A naive datetime would be read in the database session's time zone: silently wrong.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{field} must be timezone-aware (e.g. datetime.now(UTC)), got a naive datetime")
    return moment


def _whole_seconds(every: timedelta) -> int:
    seconds = every.total_seconds()
    if seconds < 1 or every.microseconds:
        raise InvalidInput(f"a schedule interval must be a whole number of seconds, at least 1; got {every}")
    return int(seconds)


def _qualified_name(fn: Handler) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
