"""The worker: claims jobs under a lease, runs their handlers, records the outcome.

Each step is its own short transaction (claim, then record), and the handler runs between
them with no transaction or row lock held, so a slow handler never blocks other workers.
If the worker dies mid-job, the lease expires and another worker takes the job over.

Stopping (SIGTERM): the worker claims nothing more and gives the job in hand `grace` to finish;
a job still running then is released (queued again, due now) so another worker takes it at once
rather than after its lease expires. Handlers are idempotent, so a job cut short and run again
is done once in effect.
"""

from __future__ import annotations

import contextvars
import signal
import threading
import time
from datetime import timedelta
from types import FrameType

import structlog

from bookwarden.db.session import Database, platform_session
from bookwarden.jobs import service
from bookwarden.jobs.models import Job, JobStatus

log = structlog.get_logger()


class Worker:
    def __init__(
        self,
        db: Database,
        name: str,
        lease: timedelta = timedelta(minutes=5),
        poll_interval: float = 1.0,
        grace: timedelta = timedelta(seconds=30),
    ):
        if not name:
            raise ValueError("a worker needs a name: it is written into the lease of every job it claims")
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        if not timedelta(0) <= grace < lease:
            # A job still running past its lease is taken over while it runs: the grace must end first.
            raise ValueError(f"grace must be at least 0 and shorter than the lease ({lease}), got {grace}")
        self.db = db
        self.name = name
        # Longer than the slowest handler: a job still running when its lease expires is
        # taken over and run a second time by another worker.
        self.lease = lease
        self.poll_interval = poll_interval
        self.grace = grace

    def claim_one(self) -> Job | None:
        """Lease the next runnable job to this worker and commit the claim."""
        with platform_session(self.db) as session:
            job = service.claim_next(session, self.name, self.lease)
        if job is not None:
            log.info("job.claimed", worker=self.name, **_job_fields(job))
        return job

    def run_one(self, stop: threading.Event | None = None) -> bool:
        """Claim, run and record one job; False when no job was due.

        With `stop`, the handler runs in a thread of its own so that the worker can keep its word once
        `stop` is set: the job gets `grace` to finish, and is released if it has not.
        """
        job = self.claim_one()
        if job is None:
            return False
        started = time.monotonic()
        failure: list[Exception] = []

        def run() -> None:
            try:
                service.handler_for(job.kind)(self.db, job.payload)
            except Exception as exc:
                failure.append(exc)

        if stop is None:
            run()
        else:
            # A daemon thread: a job released at the end of the grace dies with the process, its open
            # transaction (if any) rolled back by the server when the connection drops. It runs in a copy of
            # this thread's context, so its audit events carry what they carried when jobs ran in the loop.
            context = contextvars.copy_context()
            running = threading.Thread(target=context.run, args=(run,), name=f"job {job.id}", daemon=True)
            running.start()
            if not self._wait(running, stop, job):
                return True
        if failure:
            # Any handler failure is the job's failure, never the worker's: record it and go on.
            self._record_failure(job, failure[0], time.monotonic() - started)
        else:
            self._record_success(job, time.monotonic() - started)
        return True

    def _wait(self, running: threading.Thread, stop: threading.Event, job: Job) -> bool:
        """Wait for the job's thread; False if the grace ran out after `stop` and the job was released."""
        deadline: float | None = None
        while True:
            running.join(timeout=0.1)
            if not running.is_alive():
                return True
            if not stop.is_set():
                continue
            if deadline is None:
                deadline = time.monotonic() + self.grace.total_seconds()
                log.info(
                    "worker.finishing", worker=self.name, grace_seconds=self.grace.total_seconds(), **_job_fields(job)
                )
            elif time.monotonic() >= deadline:
                self._release(job)
                return False

    def _release(self, job: Job) -> None:
        with platform_session(self.db) as session:
            released = service.release(session, job.id, self.name, job.attempts)
        log.warning(
            "job.released" if released else "job.lease_lost",
            worker=self.name,
            outcome="released_at_shutdown" if released else "lease_lost_at_shutdown",
            **_job_fields(job),
        )

    def tick_schedules(self) -> int:
        """Enqueue the due scheduled jobs; returns how many were enqueued."""
        with platform_session(self.db) as session:
            jobs = service.enqueue_due_schedules(session)
        for job in jobs:
            log.info("job.scheduled", worker=self.name, **_job_fields(job))
        return len(jobs)

    def run_forever(self, stop: threading.Event) -> None:
        """Run jobs until `stop` is set; the job in hand gets `grace` to finish, then is released."""
        log.info(
            "worker.started",
            worker=self.name,
            lease_seconds=self.lease.total_seconds(),
            grace_seconds=self.grace.total_seconds(),
        )
        next_tick = 0.0
        while not stop.is_set():
            try:
                # Ticking once per poll interval, not once per job, keeps a long backlog
                # from doubling the number of transactions.
                if time.monotonic() >= next_tick:
                    self.tick_schedules()
                    next_tick = time.monotonic() + self.poll_interval
                busy = not stop.is_set() and self.run_one(stop)
            except Exception as exc:
                # The database may be restarting or failing over: wait and try again rather
                # than exit, since nothing else would restart the duties.
                log.error("worker.loop_failed", worker=self.name, error_type=type(exc).__name__)
                busy = False
            if not busy:
                stop.wait(self.poll_interval)
        log.info("worker.stopped", worker=self.name)

    def _record_success(self, job: Job, seconds: float) -> None:
        with platform_session(self.db) as session:
            kept = service.record_success(session, job.id, self.name, job.attempts)
        if kept:
            log.info(
                "job.succeeded", worker=self.name, outcome="succeeded", seconds=round(seconds, 3), **_job_fields(job)
            )
        else:
            log.warning(
                "job.lease_lost",
                worker=self.name,
                outcome="succeeded_after_lease_lost",
                seconds=round(seconds, 3),
                **_job_fields(job),
            )

    def _record_failure(self, job: Job, exc: Exception, seconds: float) -> None:
        error = service.describe_error(exc)
        with platform_session(self.db) as session:
            status = service.record_failure(session, job.id, self.name, job.attempts, error)
        # The error message goes to the jobs table, not the log: it may quote personal data.
        fields = {
            "worker": self.name,
            "error_type": type(exc).__name__,
            "seconds": round(seconds, 3),
            **_job_fields(job),
        }
        if status is None:
            log.warning("job.lease_lost", outcome="failed_after_lease_lost", **fields)
        elif status is JobStatus.FAILED:
            log.error("job.failed", outcome="failed", **fields)
        else:
            log.warning("job.retry_scheduled", outcome="retry", **fields)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`, so `run_forever` finishes the job in hand and returns.

    Call from the main thread (Python delivers signals only there).
    """

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker.stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _job_fields(job: Job) -> dict[str, object]:
    # Payload values may name people; their keys say enough to tell jobs apart.
    return {"job_id": job.id, "kind": job.kind, "attempt": job.attempts, "payload_keys": sorted(job.payload)}
