"""The job queue: jobs run once, failures retry with backoff, crashed workers are replaced,
schedules enqueue once per interval, and nothing personal reaches the logs."""

from __future__ import annotations

import signal
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from structlog.testing import capture_logs

from bookwarden.core.errors import InvalidInput, NotFound
from bookwarden.db.session import platform_session
from bookwarden.jobs import service
from bookwarden.jobs.models import Job, JobSchedule, JobStatus
from bookwarden.jobs.worker import Worker, stop_on_signals


@pytest.fixture
def kind() -> str:
    """A kind of its own for each test, so handlers registered by one test never run another's jobs."""
    return f"test.{uuid.uuid4().hex[:12]}"


def enqueue(db, kind, payload=None, **options) -> Job:
    with platform_session(db) as session:
        return service.enqueue(session, kind, payload, **options)


def load(db, job_id) -> Job:
    with platform_session(db) as session:
        return session.get(Job, job_id)


def make_due(db, job_id) -> None:
    """Skip the backoff: the retry becomes due now."""
    with platform_session(db) as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_at=func.now() - timedelta(seconds=1)))


def db_now(db) -> datetime:
    with platform_session(db) as session:
        return session.scalar(select(func.now()))


def test_an_enqueued_job_runs_once_with_its_payload_and_succeeds(db, kind):
    seen = []

    @service.handler(kind)
    def record(database, payload):
        seen.append((database, payload))

    job = enqueue(db, kind, {"tenant_id": "t-1", "n": 3})
    assert (job.status, job.attempts, job.max_attempts) == (JobStatus.QUEUED, 0, 5)

    worker = Worker(db, "w1")
    assert worker.run_one() is True
    assert worker.run_one() is False

    assert seen == [(db, {"tenant_id": "t-1", "n": 3})]
    done = load(db, job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.attempts == 1
    assert done.finished_at is not None
    assert (done.locked_by, done.locked_until, done.last_error) == (None, None, None)


def test_a_job_is_enqueued_only_if_the_callers_transaction_commits(db, kind):
    with pytest.raises(RuntimeError), platform_session(db) as session:
        service.enqueue(session, kind)
        raise RuntimeError("the business transaction failed")

    assert Worker(db, "w1").claim_one() is None


def test_enqueue_refuses_bad_input_with_a_clear_error(db, kind):
    with platform_session(db) as session:
        with pytest.raises(InvalidInput, match="timezone-aware"):
            service.enqueue(session, kind, run_at=datetime(2030, 1, 1))
        with pytest.raises(InvalidInput, match="max_attempts"):
            service.enqueue(session, kind, max_attempts=0)
        with pytest.raises(InvalidInput, match="kind"):
            service.enqueue(session, " ")
        with pytest.raises(InvalidInput, match="JSON object"):
            service.enqueue(session, kind, ["not", "an", "object"])
        with pytest.raises(InvalidInput, match="JSON-serializable"):
            service.enqueue(session, kind, {"when": datetime.now(UTC)})
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_job_due_in_the_future_is_not_claimed_early(db, kind):
    ran = []
    service.handler(kind)(lambda _db, payload: ran.append(payload))
    later = enqueue(db, kind, {"when": "later"}, run_at=db_now(db) + timedelta(hours=1))
    now = enqueue(db, kind, {"when": "now"})

    worker = Worker(db, "w1")
    assert worker.run_one() is True
    assert worker.run_one() is False
    assert ran == [{"when": "now"}]
    assert load(db, later.id).status is JobStatus.QUEUED
    assert load(db, now.id).status is JobStatus.SUCCEEDED


def test_a_failing_job_is_retried_with_backoff_then_failed_with_its_last_error(db, kind):
    calls = []

    @service.handler(kind)
    def flaky(_db, payload):
        calls.append(payload)
        raise ValueError(f"upstream refused call {len(calls)}")

    job = enqueue(db, kind, {"mailbox": "x"}, max_attempts=3)
    worker = Worker(db, "w1")

    for attempt in (1, 2):
        assert worker.run_one() is True
        retry = load(db, job.id)
        assert retry.status is JobStatus.QUEUED
        assert retry.attempts == attempt
        assert retry.last_error == f"ValueError: upstream refused call {attempt}"
        assert (retry.locked_by, retry.locked_until, retry.finished_at) == (None, None, None)
        # 2**attempt seconds with jitter in its upper half; the transaction clock stands still in `db`.
        delay = retry.run_at - db_now(db)
        assert timedelta(seconds=2**attempt / 2) <= delay <= timedelta(seconds=2**attempt)
        assert worker.run_one() is False, "not due before its backoff has passed"
        make_due(db, job.id)

    assert worker.run_one() is True
    failed = load(db, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 3
    assert failed.last_error == "ValueError: upstream refused call 3"
    assert failed.finished_at is not None
    assert worker.run_one() is False
    assert len(calls) == 3


def test_the_stored_error_is_type_and_message_truncated_never_a_traceback(db, kind):
    @service.handler(kind)
    def verbose(_db, _payload):
        raise RuntimeError("x" * 5000)

    job = enqueue(db, kind, max_attempts=1)
    Worker(db, "w1").run_one()

    failed = load(db, job.id)
    assert failed.status is JobStatus.FAILED
    assert len(failed.last_error) == service.MAX_ERROR_LENGTH
    assert failed.last_error.startswith("RuntimeError: xxx")
    assert "Traceback" not in failed.last_error


def test_backoff_doubles_per_attempt_with_jitter_and_is_capped_at_an_hour():
    for attempt in range(1, 12):
        delays = {service.backoff(attempt) for _ in range(20)}
        ceiling = min(2**attempt, 3600)
        assert all(timedelta(seconds=ceiling / 2) <= d <= timedelta(seconds=ceiling) for d in delays)
        assert len(delays) > 1, "jitter spreads retries of jobs that failed together"
    assert service.backoff(40) <= timedelta(hours=1)


def test_a_job_of_unknown_kind_fails_cleanly_and_the_worker_goes_on(db, kind):
    orphan = enqueue(db, f"{kind}.nobody-handles-this", max_attempts=1)
    ran = []
    service.handler(kind)(lambda _db, payload: ran.append(payload))
    enqueue(db, kind, {"n": 1})

    worker = Worker(db, "w1")
    assert worker.run_one() is True
    assert worker.run_one() is True

    failed = load(db, orphan.id)
    assert failed.status is JobStatus.FAILED
    assert failed.last_error.startswith("UnknownJobKind: no handler is registered for job kind")
    assert ran == [{"n": 1}]


def test_a_kind_cannot_be_given_a_second_handler(kind):
    service.handler(kind)(lambda _db, _payload: None)
    with pytest.raises(ValueError, match="already has handler"):

        @service.handler(kind)
        def other(_db, _payload):
            pass


def test_concurrent_workers_run_every_job_exactly_once(committed_db, kind):
    runs = Counter()
    runners = set()
    lock = threading.Lock()
    # The first two jobs to run wait for each other: they finish only if two workers hold claims at
    # the same time (a queue that serialised its claims would break this barrier, after 20 s).
    side_by_side = threading.Barrier(2, timeout=20)

    @service.handler(kind)
    def count(_db, payload):
        with lock:
            runs[payload["n"]] += 1
            runners.add(threading.current_thread().name)
            first_two = sum(runs.values()) <= 2
        if first_two:
            side_by_side.wait()

    with platform_session(committed_db) as session:
        for n in range(50):
            service.enqueue(session, kind, {"n": n})

    workers = [Worker(committed_db, f"w{i}") for i in range(4)]
    start = threading.Barrier(len(workers))
    errors = []

    def drain(worker):
        start.wait()
        try:
            while worker.run_one():
                pass
        except Exception as exc:  # surfaced by the assertion below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert errors == []
    assert runs == Counter(range(50))
    assert len(runners) > 1, "the workers really did claim side by side"
    assert not side_by_side.broken
    with platform_session(committed_db) as session:
        statuses = session.execute(select(Job.status, Job.attempts)).all()
    assert Counter(statuses) == Counter({(JobStatus.SUCCEEDED, 1): 50})


def test_a_job_abandoned_by_a_crashed_worker_is_completed_by_another_after_the_lease(committed_db, kind):
    ran = []
    service.handler(kind)(lambda _db, payload: ran.append(payload))
    job = enqueue(committed_db, kind, {"n": 1})

    crashed = Worker(committed_db, "crashed", lease=timedelta(minutes=5))
    survivor = Worker(committed_db, "survivor")
    assert crashed.claim_one().id == job.id  # ...and the process dies here, before running it

    assert survivor.run_one() is False, "the lease still protects the job"
    with platform_session(committed_db) as session:  # five minutes pass (aged in the row, not slept)
        session.execute(update(Job).where(Job.id == job.id).values(locked_until=func.now() - timedelta(seconds=1)))
    assert survivor.run_one() is True

    done = load(committed_db, job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.attempts == 2, "the lost attempt counts"
    assert "worker lost" in done.last_error and "'crashed'" in done.last_error
    assert ran == [{"n": 1}]


def test_a_worker_that_outlived_its_lease_cannot_overwrite_the_new_outcome(committed_db, kind, owner_conn):
    service.handler(kind)(lambda _db, _payload: None)
    job = enqueue(committed_db, kind)
    slow = Worker(committed_db, "slow")
    claimed = slow.claim_one()
    owner_conn.execute("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = %s", (job.id,))
    assert Worker(committed_db, "other").run_one() is True

    with platform_session(committed_db) as session:
        assert service.record_failure(session, job.id, "slow", claimed.attempts, "late") is None
        assert service.record_success(session, job.id, "slow", claimed.attempts) is False
    done = load(committed_db, job.id)
    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 2)


def test_a_lost_job_that_used_all_its_attempts_is_failed_not_rerun(db, kind):
    ran = []
    service.handler(kind)(lambda _db, payload: ran.append(payload))
    job = enqueue(db, kind, max_attempts=1)
    Worker(db, "crashed").claim_one()
    with platform_session(db) as session:
        expired = func.now() - timedelta(seconds=1)
        session.execute(update(Job).where(Job.id == job.id).values(locked_until=expired))

    assert Worker(db, "survivor").run_one() is False
    failed = load(db, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.last_error.startswith("worker lost: the lease of 'crashed' expired during attempt 1")
    assert ran == []


def test_a_schedule_enqueues_one_job_per_interval(db, kind):
    with platform_session(db) as session:
        service.schedule(session, "nightly-purge", kind, timedelta(hours=1), {"scope": "all"})

    worker = Worker(db, "w1")
    assert worker.tick_schedules() == 1
    assert worker.tick_schedules() == 0, "not due again until the interval has passed"
    with platform_session(db) as session:
        planned = session.get(JobSchedule, "nightly-purge")
        assert planned.next_run_at == session.scalar(select(func.now())) + timedelta(hours=1)
        planned.next_run_at = session.scalar(select(func.now())) - timedelta(seconds=1)

    assert worker.tick_schedules() == 1
    with platform_session(db) as session:
        jobs = session.scalars(select(Job).where(Job.kind == kind)).all()
    assert [(j.status, j.payload) for j in jobs] == [(JobStatus.QUEUED, {"scope": "all"})] * 2


def test_a_schedule_that_fell_behind_enqueues_once_not_a_burst(db, kind):
    with platform_session(db) as session:
        service.schedule(session, "scan", kind, timedelta(minutes=5), first_run_at=db_now(db) - timedelta(days=2))

    assert Worker(db, "w1").tick_schedules() == 1
    with platform_session(db) as session:
        planned = session.get(JobSchedule, "scan")
        assert planned.next_run_at == session.scalar(select(func.now())) + timedelta(minutes=5)


def test_declaring_a_schedule_again_is_idempotent(db, kind):
    first_run = db_now(db) + timedelta(minutes=10)
    with platform_session(db) as session:
        created = service.schedule(session, "backup", kind, timedelta(hours=1), {"v": 1}, first_run_at=first_run)
    with platform_session(db) as session:
        again = service.schedule(session, "backup", kind, timedelta(hours=1), {"v": 1})
        count = session.scalar(select(func.count()).select_from(JobSchedule))

    assert count == 1
    # A restart neither postpones nor advances the pending run.
    assert again.next_run_at == created.next_run_at == first_run
    assert (again.kind, again.payload, again.every_seconds, again.enabled) == (kind, {"v": 1}, 3600, True)


def test_redeclaring_a_schedule_updates_it_but_keeps_an_operators_pause(db, kind):
    with platform_session(db) as session:
        service.schedule(session, "fim", kind, timedelta(hours=6), first_run_at=db_now(db) + timedelta(hours=5))
        service.set_schedule_enabled(session, "fim", False)
    with platform_session(db) as session:
        changed = service.schedule(session, "fim", kind, timedelta(minutes=30), {"deep": True})

    assert changed.every_seconds == 1800
    assert changed.payload == {"deep": True}
    # A shorter interval pulls the pending run in.
    assert changed.next_run_at == db_now(db) + timedelta(minutes=30)
    assert changed.enabled is False

    with platform_session(db) as session:
        session.get(JobSchedule, "fim").next_run_at = db_now(db) - timedelta(seconds=1)
    assert Worker(db, "w1").tick_schedules() == 0, "a paused schedule enqueues nothing"
    with platform_session(db) as session:
        service.set_schedule_enabled(session, "fim", True)
    assert Worker(db, "w1").tick_schedules() == 1


def test_schedule_refuses_bad_intervals_and_unknown_names(db, kind):
    with platform_session(db) as session:
        with pytest.raises(InvalidInput, match="whole number of seconds"):
            service.schedule(session, "too-fast", kind, timedelta(milliseconds=500))
        with pytest.raises(InvalidInput, match="whole number of seconds"):
            service.schedule(session, "never", kind, timedelta(0))
        with pytest.raises(NotFound, match="no job schedule named 'missing'"):
            service.set_schedule_enabled(session, "missing", False)


def test_workers_ticking_at_the_same_moment_enqueue_a_due_schedule_once(committed_db, kind):
    with platform_session(committed_db) as session:
        service.schedule(session, "grant-expiry", kind, timedelta(minutes=1))

    workers = [Worker(committed_db, f"w{i}") for i in range(4)]
    start = threading.Barrier(len(workers))
    enqueued = []

    def tick(worker):
        start.wait()
        enqueued.append(worker.tick_schedules())

    threads = [threading.Thread(target=tick, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert sorted(enqueued) == [0, 0, 0, 1]
    with platform_session(committed_db) as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.kind == kind)) == 1


def test_run_forever_runs_jobs_until_stopped(committed_db, kind):
    done = threading.Event()
    service.handler(kind)(lambda _db, _payload: done.set())
    stop = threading.Event()
    worker = Worker(committed_db, "w1", poll_interval=0.05)
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    try:
        enqueue(committed_db, kind)
        assert done.wait(timeout=30)  # a bound for a stuck worker, not a speed expectation
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_sigterm_and_sigint_ask_the_worker_to_stop():
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop_on_signals(stop)
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set()
        stop.clear()
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_logs_name_payload_keys_never_payload_values_or_error_messages(db, kind):
    @service.handler(kind)
    def fails(_db, payload):
        raise LookupError(f"no patron {payload['email']}")

    job = enqueue(db, kind, {"email": "ada@example.org", "tenant_id": "t-9"}, max_attempts=1)
    with capture_logs() as logs:
        Worker(db, "w1").run_one()

    assert [e["event"] for e in logs] == ["job.claimed", "job.failed"]
    assert logs[1] | {"seconds": None} == {
        "event": "job.failed",
        "log_level": "error",
        "worker": "w1",
        "job_id": job.id,
        "kind": kind,
        "attempt": 1,
        "payload_keys": ["email", "tenant_id"],
        "outcome": "failed",
        "error_type": "LookupError",
        "seconds": None,
    }
    assert "ada@example.org" not in repr(logs)
    assert load(db, job.id).last_error == "LookupError: no patron ada@example.org"


def test_finished_jobs_are_purged_after_their_keep_period(db, kind):
    service.handler(kind)(lambda _db, _payload: None)
    old = enqueue(db, kind)
    Worker(db, "w1").run_one()
    pending = enqueue(db, kind, run_at=db_now(db) + timedelta(days=1))
    with platform_session(db) as session:
        assert service.purge_finished(session, timedelta(days=30)) == 0
        long_ago = func.now() - timedelta(days=31)
        session.execute(update(Job).where(Job.id == old.id).values(finished_at=long_ago))
        assert service.purge_finished(session, timedelta(days=30)) == 1
        assert session.get(Job, old.id) is None
        assert session.get(Job, pending.id) is not None


def test_job_tables_are_platform_tables_the_app_role_cannot_truncate_or_reshape(owner_conn):
    columns = owner_conn.execute(
        "SELECT table_name FROM information_schema.columns "
        "WHERE table_name IN ('jobs', 'job_schedules') AND column_name = 'tenant_id'"
    ).fetchall()
    assert columns == []
    privilege = "SELECT has_table_privilege('bookwarden_app', %s, %s)"
    assert owner_conn.execute(privilege, ("jobs", "UPDATE")).fetchone()[0] is True
    for table, denied in [
        ("jobs", "TRUNCATE"),
        ("jobs", "REFERENCES"),
        ("job_schedules", "DELETE"),
        ("job_schedules", "TRUNCATE"),
    ]:
        assert owner_conn.execute(privilege, (table, denied)).fetchone()[0] is False, (table, denied)
    owner = owner_conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'jobs'").fetchone()[0]
    assert owner != "bookwarden_app"


def test_a_stopping_worker_releases_a_job_that_outlasts_its_grace_and_cannot_record_it_later(committed_db, kind):
    started, finish = threading.Event(), threading.Event()

    @service.handler(kind)
    def slow(_db, _payload):
        started.set()
        finish.wait(timeout=30)

    job = enqueue(committed_db, kind)
    stop = threading.Event()
    worker = Worker(committed_db, "w1", poll_interval=0.05, grace=timedelta(seconds=0.2))
    loop = threading.Thread(target=worker.run_forever, args=(stop,))
    loop.start()
    try:
        assert started.wait(timeout=30)
        with platform_session(committed_db) as session:
            assert service.release(session, job.id, "someone-else", 1) is False  # only the holder gives it back
        with capture_logs() as logs:
            stop.set()
            loop.join(timeout=30)
        assert not loop.is_alive()
        released = load(committed_db, job.id)
        assert (released.status, released.attempts, released.locked_by) == (JobStatus.QUEUED, 1, None)
        assert released.run_at <= db_now(committed_db)
        assert [e["event"] for e in logs][-3:] == ["worker.finishing", "job.released", "worker.stopped"]

        # Taken again at once, as the next attempt; the first run's outcome, should it end now, counts for nothing.
        assert Worker(committed_db, "w2").claim_one().id == job.id
        with platform_session(committed_db) as session:
            assert service.record_success(session, job.id, "w1", 1) is False
        assert load(committed_db, job.id).attempts == 2
    finally:
        finish.set()
        stop.set()
        loop.join(timeout=30)


def test_the_grace_must_end_before_the_lease(committed_db):
    with pytest.raises(ValueError, match="shorter than the lease"):
        Worker(committed_db, "w1", lease=timedelta(seconds=30), grace=timedelta(seconds=30))
