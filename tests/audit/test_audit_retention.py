"""Audit retention: whole sealed segments past their retention are dropped, recorded, and the chain still
verifies from the dropped boundary; proofs reach everything after it."""

from __future__ import annotations

import dataclasses
import os
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from bookwarden.audit import bundle, checkpoints, retention, signing, verify
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.errors import NotFound
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session

SEVEN_YEARS = timedelta(days=2555)


@pytest.fixture
def key() -> signing.SigningKey:
    return signing.SigningKey.from_seed(os.urandom(32))


def write(db, tenant_id, count: int, age: timedelta = timedelta(0)) -> None:
    """`count` events, recorded through the real path, that happened `age` ago."""
    who = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())
    with tenant_session(db, tenant_id) as session:
        for _ in range(count):
            audit.record(session, Action.LOAN_CREATED, ("loan", uuid.uuid4()), actor=who)
        queued = session.info[audit.PENDING]
        session.info[audit.PENDING] = [dataclasses.replace(e, occurred_at=e.occurred_at - age) for e in queued]


def seal(db, tenant_id, key) -> signing.Checkpoint:
    with tenant_session(db, tenant_id) as session:
        return checkpoints.make_checkpoint(session, key)


def check(db, tenant_id, key) -> verify.ChainReport:
    return verify.verify_chain(db, tenant_id, signing.TrustedKeys(key.public))


@pytest.fixture
def aged(committed_db, committed_tenant, key):
    """20 events from eight years ago sealed at 20, then 5 recent ones sealed at 26 (21: the first seal's event)."""
    tenant_id = committed_tenant()
    write(committed_db, tenant_id, 20, age=timedelta(days=8 * 365))
    assert seal(committed_db, tenant_id, key).tree_size == 20
    write(committed_db, tenant_id, 5)
    assert seal(committed_db, tenant_id, key).tree_size == 26
    return tenant_id


def test_a_segment_past_retention_is_dropped_and_the_rest_still_verifies(committed_db, aged, key, tmp_path):
    drops = retention.drop_expired_segments(committed_db, SEVEN_YEARS)
    assert [(d.tenant_id, d.upto_seq, d.events) for d in drops if d.tenant_id == aged] == [(aged, 20, 20)]
    with tenant_session(committed_db, aged) as session:
        seqs = [s for (s,) in session.execute(text("SELECT seq FROM audit_events ORDER BY seq"))]
        last = session.execute(text("SELECT action, details FROM audit_events ORDER BY seq DESC")).first()
    assert seqs[0] == 21 and seqs[-1] == 28  # 27: the second seal's event, 28: the drop's own
    assert last.action == "audit.segment_dropped" and last.details["upto_seq"] == 20
    report = check(committed_db, aged, key)
    assert report.clean, report.finding
    assert report.start.seq == 20 and report.events == 8 and report.checkpoints == 2
    assert any("dropped" in note for note in report.notes)

    with tenant_session(committed_db, aged) as session:
        proof = checkpoints.inclusion_proof(session, 22)
        assert proof["tree_size"] == 26
        assert checkpoints.consistency_proof(session, 20, 26)["consistency_path"]
        with pytest.raises(NotFound):
            checkpoints.inclusion_proof(session, 5)

    path = tmp_path / "after-drop.tar.gz"
    bundle.export_bundle(committed_db, aged, path, [key.public])
    report, _ = bundle.verify_bundle(path, [key.public])
    assert report.clean and report.start.seq == 20 and report.events == 8

    # Sealing goes on from the newest checkpoint.
    assert seal(committed_db, aged, key).tree_size == 28
    assert check(committed_db, aged, key).clean


def test_nothing_within_retention_is_dropped(committed_db, committed_tenant, key):
    tenant_id = committed_tenant()
    write(committed_db, tenant_id, 5)
    seal(committed_db, tenant_id, key)
    assert [d for d in retention.drop_expired_segments(committed_db, SEVEN_YEARS) if d.tenant_id == tenant_id] == []
    with tenant_session(committed_db, tenant_id) as session:
        assert session.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 6


def test_a_zero_retention_drops_up_to_the_newest_checkpoint_only(committed_db, committed_tenant, key):
    tenant_id = committed_tenant()
    write(committed_db, tenant_id, 7)
    seal(committed_db, tenant_id, key)
    write(committed_db, tenant_id, 3)  # unsealed: never dropped
    with tenant_session(committed_db, tenant_id) as session:
        drop = retention.drop_expired_segment(session, timedelta(0))
    assert (drop.upto_seq, drop.events) == (7, 7)
    assert check(committed_db, tenant_id, key).clean
    with tenant_session(committed_db, tenant_id) as session:
        assert retention.drop_expired_segment(session, timedelta(0)) is None  # nothing sealed left to drop


def test_the_database_refuses_to_drop_an_unsealed_or_young_segment(committed_db, committed_tenant, key):
    tenant_id = committed_tenant()
    write(committed_db, tenant_id, 4)
    seal(committed_db, tenant_id, key)
    for upto, interval, words in ((3, "0 days", "no checkpoint seals"), (4, "1 day", "within its retention")):
        with pytest.raises(Exception, match=words), tenant_session(committed_db, tenant_id) as session:
            session.execute(text(f"SELECT bookwarden_audit_drop_segment(:t, {upto}, interval '{interval}')"),
                            {"t": tenant_id})


def test_tampering_after_a_drop_is_still_detected(committed_db, aged, key, superuser_conn):
    retention.drop_expired_segments(committed_db, SEVEN_YEARS)
    superuser_conn.execute("UPDATE audit_segment_drops SET last_hash = sha256(last_hash) WHERE tenant_id = %s",
                           (aged,))
    finding = check(committed_db, aged, key).finding
    assert finding is not None and "dropped segment's last hash" in finding.problem
    superuser_conn.execute("UPDATE audit_segment_drops SET upto_seq = 21 WHERE tenant_id = %s", (aged,))
    assert "no checkpoint seals" in check(committed_db, aged, key).finding.problem


def test_an_event_after_the_boundary_changed_is_named(committed_db, aged, key, superuser_conn):
    retention.drop_expired_segments(committed_db, SEVEN_YEARS)
    superuser_conn.execute("UPDATE audit_events SET outcome = 'failed' WHERE tenant_id = %s AND seq = 23", (aged,))
    assert check(committed_db, aged, key).finding.seq == 23


def test_the_retention_job_uses_the_configured_period(committed_db, aged, key, monkeypatch):
    from bookwarden.core.config import get_settings
    from bookwarden.jobs.service import handler_for

    monkeypatch.setenv("BOOKWARDEN_AUDIT_RETENTION_DAYS", "3650")  # ten years: the old events stay
    get_settings.cache_clear()
    try:
        handler_for(retention.RETENTION_JOB)(committed_db, {})
        with tenant_session(committed_db, aged) as session:
            assert checkpoints.segment_boundary(session) is None
        monkeypatch.setenv("BOOKWARDEN_AUDIT_RETENTION_DAYS", "2555")
        get_settings.cache_clear()
        handler_for(retention.RETENTION_JOB)(committed_db, {})
        with tenant_session(committed_db, aged) as session:
            assert checkpoints.segment_boundary(session)[0] == 20
    finally:
        get_settings.cache_clear()


def test_the_worker_declares_the_audit_duties(db):
    from bookwarden import areas
    from bookwarden.audit import jobs as audit_jobs
    from bookwarden.db.session import platform_session
    from bookwarden.jobs.models import JobSchedule
    from bookwarden.privacy.retention import jobs as retention_jobs

    assert {audit_jobs, retention_jobs} <= set(areas.modules("jobs"))
    audit_jobs.declare_schedules(db)
    retention_jobs.declare_schedules(db)
    with platform_session(db) as session:
        every = {s.name: s.every_seconds for s in session.query(JobSchedule)}
    assert every[checkpoints.CHECKPOINT_JOB] == 60 and every[retention.RETENTION_JOB] == 86_400
