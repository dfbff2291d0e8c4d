"""Several `bookwarden worker` processes on one database: each job is done once in effect, no two workers ever
hold it at once, the work spreads over them, and SIGTERM stops a worker gracefully: the job in hand finishes
within BOOKWARDEN_GRACEFUL_SHUTDOWN_SECONDS, or is given back and taken by another worker at once (its five-minute
lease not waited out)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bookwarden import areas
from bookwarden.db.session import platform_session
from bookwarden.jobs import service
from bookwarden.jobs.models import Job, JobSchedule, JobStatus
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.jobs.probe_worker import PROBE

REPOSITORY = Path(__file__).resolve().parents[2]
STARTUP = 180  # seconds: each process imports the whole application, slow on a loaded machine


class WorkerProcess:
    """A real `bookwarden worker` (with the probe job kind), its JSON log lines collected as they come."""

    def __init__(self, name: str, env: dict[str, str]):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.jobs.probe_worker", "worker", "--name", name],
            cwd=REPOSITORY,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def events(self) -> list[str]:
        found = []
        for line in list(self.lines):
            try:
                found.append(json.loads(line)["event"])
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def wait_for(self, event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.events():
            assert self.process.poll() is None, f"{self.name} exited: {''.join(self.lines)[-3000:]}"
            assert time.monotonic() < deadline, f"{self.name} never logged {event}: {''.join(self.lines)[-3000:]}"
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_workers(cli_env, committed_db):  # noqa: F811 - the fixture imported above
    """`start_workers(n, grace_seconds)` -> n running workers; the platform's own schedules paused first, so the
    workers run the probe jobs and nothing else (a paused schedule stays paused when a worker re-declares it)."""
    areas.load()
    for jobs in areas.modules("jobs"):
        jobs.declare_schedules(committed_db)
    with platform_session(committed_db) as session:
        session.execute(update(JobSchedule).values(enabled=False))
    started: list[WorkerProcess] = []

    def start(n: int, grace_seconds: int) -> list[WorkerProcess]:
        env = os.environ | cli_env | {"BOOKWARDEN_GRACEFUL_SHUTDOWN_SECONDS": str(grace_seconds)}
        workers = [WorkerProcess(f"w{len(started) + i + 1}", env) for i in range(n)]
        started.extend(workers)
        for worker in workers:
            worker.wait_for("worker.started", STARTUP)
        return workers

    yield start
    for worker in started:
        worker.kill()


def enqueue_probes(db, trace: Path, count: int, seconds: float) -> list[int]:
    with platform_session(db) as session:
        return [
            service.enqueue(session, PROBE, {"trace": str(trace), "marker": f"m{i}", "seconds": seconds}).id
            for i in range(count)
        ]


def read_trace(trace: Path) -> list[tuple[str, str, int, float]]:
    if not trace.exists():
        return []
    return [
        (step, marker, int(pid), float(at))
        for step, marker, pid, at in map(str.split, trace.read_text().split("\n")[:-1])
    ]


def jobs_of(db, ids: list[int]) -> dict[int, Job]:
    with platform_session(db) as session:
        return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}


def wait_until(condition, timeout: float, message) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message()
        time.sleep(0.05)


def test_three_workers_run_each_job_once_never_together_and_share_the_work(start_workers, committed_db, tmp_path):
    workers = start_workers(3, grace_seconds=30)
    trace = tmp_path / "trace"
    ids = enqueue_probes(committed_db, trace, count=24, seconds=0.25)

    def finished():
        return all(job.status is JobStatus.SUCCEEDED for job in jobs_of(committed_db, ids).values())

    wait_until(finished, 120, lambda: f"jobs: {[(j.id, j.status) for j in jobs_of(committed_db, ids).values()]}")
    assert [worker.stop() for worker in workers] == [0, 0, 0]

    runs = read_trace(trace)
    starts = [(marker, pid) for step, marker, pid, _ in runs if step == "start"]
    dones = [(marker, pid) for step, marker, pid, _ in runs if step == "done"]
    # Once in effect: every job began once and ended once, in the same process.
    assert sorted(starts) == sorted(dones) and len(starts) == 24
    assert sorted(Counter(marker for marker, _ in starts).values()) == [1] * 24
    # Never two holders: each job was claimed once, by one worker, whose lease the record of success found.
    assert {(job.attempts, job.last_error, job.locked_by) for job in jobs_of(committed_db, ids).values()} == {
        (1, None, None)
    }
    # The work spread: every process ran jobs, none all but a few.
    per_process = Counter(pid for _, pid in starts)
    assert set(per_process) == {worker.process.pid for worker in workers}, per_process
    assert min(per_process.values()) >= 3, per_process
    for worker in workers:
        assert worker.events().count("job.succeeded") == per_process[worker.process.pid]


def test_sigterm_lets_the_job_in_hand_finish_and_claims_nothing_more(start_workers, committed_db, tmp_path):
    (worker,) = start_workers(1, grace_seconds=30)
    trace = tmp_path / "trace"
    first, second = enqueue_probes(committed_db, trace, count=2, seconds=3)
    wait_until(lambda: read_trace(trace), 60, lambda: "the worker never began the first job")

    signalled = time.monotonic()
    assert worker.stop() == 0
    assert 1 < time.monotonic() - signalled < 30  # it waited for the job, within its grace

    runs = read_trace(trace)
    assert [(step, marker) for step, marker, _, _ in runs] == [("start", "m0"), ("done", "m0")]
    jobs = jobs_of(committed_db, [first, second])
    assert jobs[first].status is JobStatus.SUCCEEDED and jobs[first].attempts == 1
    assert (jobs[second].status, jobs[second].attempts, jobs[second].locked_by) == (JobStatus.QUEUED, 0, None)
    assert worker.events()[-2:] == ["job.succeeded", "worker.stopped"]


def test_a_job_outlasting_the_grace_is_given_back_and_taken_by_another_worker_at_once(
    start_workers, committed_db, tmp_path
):
    workers = start_workers(2, grace_seconds=1)
    trace = tmp_path / "trace"
    (job_id,) = enqueue_probes(committed_db, trace, count=1, seconds=120)
    wait_until(lambda: read_trace(trace), 60, lambda: "no worker began the job")
    holder_pid = read_trace(trace)[0][2]
    holder = next(w for w in workers if w.process.pid == holder_pid)
    other = next(w for w in workers if w is not holder)

    signalled = time.monotonic()
    assert holder.stop(timeout=30) == 0
    assert time.monotonic() - signalled < 15  # the grace (1 s), not the job (120 s) nor its lease (5 min)
    assert "job.released" in holder.events()

    # Taken by the other worker within seconds, not after the holder's lease expires.
    wait_until(
        lambda: len(read_trace(trace)) == 2, 30, lambda: f"not taken over: {read_trace(trace)}, {other.lines[-5:]}"
    )
    assert time.monotonic() - signalled < 30
    job = jobs_of(committed_db, [job_id])[job_id]
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.RUNNING, 2, other.name)
    assert "released unfinished by 'w" in job.last_error

    (trace.parent / "hurry").touch()  # the second run ends; its worker records the success
    wait_until(
        lambda: jobs_of(committed_db, [job_id])[job_id].status is JobStatus.SUCCEEDED,
        30,
        lambda: "the second run never succeeded",
    )
    assert other.stop() == 0
    runs = [(step, pid) for step, _, pid, _ in read_trace(trace)]
    # Once in effect: the first run never finished, the second did.
    assert runs == [("start", holder_pid), ("start", other.process.pid), ("done", other.process.pid)]
