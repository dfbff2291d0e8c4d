"""The job worker and the outbox killed at every step: every job finishes exactly once in effect, and every
mail reaches the (real) SMTP server at least once, a repeat with the same Message-ID, its link still usable."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.jobs import service as jobs
from bookwarden.jobs.models import Job, JobStatus
from bookwarden.jobs.worker import Worker
from bookwarden.library import deletion
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.library.schemas import PatronCreate
from bookwarden.notify import delivery
from tests.crash.kill import die_at
from tests.crash.mail import drain, lease_expires, send_reset, the_link_works

JOB_POINTS = ["jobs.claimed", "jobs.handled", "jobs.recording_success"]
OUTBOX_POINTS = ["outbox.sending", "outbox.accepted", "outbox.marked_sent"]
POINTS = [*JOB_POINTS, "jobs.recording_failure", "jobs.schedule_ticking", *OUTBOX_POINTS]
POINTS += ["outbox.sweep_requeueing", "links.queued"]


def _jobs(db, kind: str) -> list[Job]:
    with platform_session(db) as session:
        found = list(session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))
        session.expunge_all()
    return found


# -- jobs --------------------------------------------------------------------------------------


@pytest.fixture
def due_deletion(committed_db, committed_tenant, settings, audit_holds):
    """A confirmed patron deletion whose grace period ended, and its job queued: the job's effect is visible
    (the patron destroyed, one event) and must happen once."""
    tenant_id = committed_tenant()
    asker, checker = (Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset({Permission.PATRONS_WRITE}))
                      for _ in range(2))  # fmt: skip
    with tenant_session(committed_db, tenant_id) as session:
        patron_id = library.create(session, library.PATRONS, PatronCreate(name="Dora Due")).id
        deletion.ask(session, asker, patron_id)
        deletion.confirm(session, checker, patron_id)
        session.execute(text("UPDATE patrons SET deletion_due_at = now() - interval '1 second'"))
    with platform_session(committed_db) as session:
        jobs.enqueue(session, deletion.DUE_JOB)
    return tenant_id, patron_id


def _destroyed_once(db, tenant_id, patron_id) -> None:
    with tenant_session(db, tenant_id) as session:
        assert session.get(Patron, (tenant_id, patron_id)) is None
        assert session.scalar(text("SELECT count(*) FROM audit_events WHERE action = 'patron.deleted'")) == 1


@pytest.mark.parametrize("point", JOB_POINTS)
def test_a_worker_killed_around_its_job_leaves_it_to_the_next_worker_done_once(committed_db, due_deletion, point):
    tenant_id, patron_id = due_deletion
    die_at(point, lambda db: Worker(db, "doomed").run_one(), committed_db)

    [job] = _jobs(committed_db, deletion.DUE_JOB)
    assert job.status is JobStatus.RUNNING and job.locked_by == "doomed"  # claimed, never recorded
    assert not Worker(committed_db, "next").run_one()  # its lease holds it until it runs out
    lease_expires(committed_db)
    assert Worker(committed_db, "next").run_one()

    [job] = _jobs(committed_db, deletion.DUE_JOB)
    assert job.status is JobStatus.SUCCEEDED and job.attempts == 2 and "worker lost" in job.last_error
    _destroyed_once(committed_db, tenant_id, patron_id)


def test_a_worker_killed_recording_a_failure_counts_the_attempt(committed_db, settings, audit_holds):
    with platform_session(committed_db) as session:
        jobs.enqueue(session, "crash.no_such_kind", max_attempts=2)  # no handler: the attempt fails
    die_at("jobs.recording_failure", lambda db: Worker(db, "doomed").run_one(), committed_db)

    lease_expires(committed_db)
    assert Worker(committed_db, "next").run_one()
    [job] = _jobs(committed_db, "crash.no_such_kind")
    assert job.status is JobStatus.FAILED and job.attempts == 2  # the lost attempt counted: never retried forever


def test_a_worker_killed_ticking_the_schedules_enqueues_each_due_job_once(committed_db, due_deletion):
    with platform_session(committed_db) as session:
        session.execute(text("DELETE FROM jobs"))
        jobs.schedule(session, "crash-hourly", deletion.DUE_JOB, timedelta(hours=1))
    die_at("jobs.schedule_ticking", lambda db: Worker(db, "doomed").tick_schedules(), committed_db)

    assert _jobs(committed_db, deletion.DUE_JOB) == []
    assert Worker(committed_db, "next").tick_schedules() == 1
    assert Worker(committed_db, "next").tick_schedules() == 0
    assert Worker(committed_db, "next").run_one()
    _destroyed_once(committed_db, *due_deletion)


# -- the outbox --------------------------------------------------------------------------------


@pytest.mark.parametrize("point", OUTBOX_POINTS)
def test_a_mail_killed_in_delivery_arrives_at_least_once_with_its_link_usable(committed_db, smtp_server, holder, point):
    send_reset(committed_db, holder)
    die_at(point, lambda db: Worker(db, "doomed").run_one(), committed_db)

    drain(committed_db)

    # Accepted by the server before the kill: sent again, recognisably the same message.
    the_link_works(committed_db, smtp_server, holder, copies=1 if point == "outbox.sending" else 2)


def test_a_sweep_killed_while_requeueing_requeues_once_on_its_next_run(committed_db, smtp_server, holder):
    send_reset(committed_db, holder)
    with platform_session(committed_db) as session:
        session.execute(text("DELETE FROM jobs"))  # the delivery's job lost: the message is an orphan
    die_at("outbox.sweep_requeueing", lambda db: delivery.sweep(db, {}), committed_db)

    assert _jobs(committed_db, delivery.DELIVER) == []
    delivery.sweep(committed_db, {})
    delivery.sweep(committed_db, {})  # a second sweep finds a live job: nothing more
    assert len(_jobs(committed_db, delivery.DELIVER)) == 1
    drain(committed_db)
    the_link_works(committed_db, smtp_server, holder, copies=1)


def test_a_link_killed_before_its_commit_is_neither_mailed_nor_lost(committed_db, smtp_server, holder):
    die_at("links.queued", lambda db: send_reset(db, holder), committed_db)

    assert _jobs(committed_db, delivery.DELIVER) == []  # nothing mailed, so no link is out there
    send_reset(committed_db, holder)  # the administrator asks again
    drain(committed_db)
    the_link_works(committed_db, smtp_server, holder, copies=1)
