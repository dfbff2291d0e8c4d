"""Collection: the audit trail read by saved seq, files tailed into the engine through a bounded queue (a slow engine
slows the readers and nothing is dropped), alerts and positions saved together, the platform's 404s on ids and its
access log reaching the rules."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from bookwarden.api.app import create_app
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.config import Settings
from bookwarden.core.permissions import LIBRARY_READ
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.tokens import service as tokens
from bookwarden.monitor.alerts.models import StoredAlert
from bookwarden.monitor.collect.audit import AuditReader, source_of
from bookwarden.monitor.collect.models import Position
from bookwarden.monitor.collect.pipeline import Pipeline, TailedFile
from bookwarden.monitor.engine import Engine
from bookwarden.monitor.parse.access import parse as parse_access
from bookwarden.monitor.parse.reader import Format
from bookwarden.monitor.sigma.load import builtin_paths, load

NOW = datetime.now(UTC)


def _sshd_failures(path: Path, count: int, address: str = "203.0.113.9", pid: int = 4000, start: int = 0) -> None:
    with path.open("a") as f:
        for n in range(count):
            stamp = (NOW + timedelta(seconds=start + n)).strftime("%b %e %H:%M:%S")
            f.write(f"{stamp} web1 sshd[{pid + n}]: Failed password for root from {address} port 4{n:04d} ssh2\n")


def _run(pipeline: Pipeline, until, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    pipeline.run(until=lambda: until() or time.monotonic() > deadline)


def _alerts(db, rule: str) -> list[StoredAlert]:
    with platform_session(db) as session:
        return list(session.scalars(select(StoredAlert).where(StoredAlert.rule == rule)))


def test_the_audit_trail_is_read_once_from_a_saved_seq(db, tenant):
    def failed(n: int) -> None:
        with audit.acting(audit.Context(source_address=f"192.0.2.{n}")):
            audit.record_now(
                db, Action.SIGN_IN_FAILED, outcome=Outcome.DENIED, details={"reason": "password"}, tenant_id=tenant.id
            )

    for n in range(3):
        failed(n)
    reader = AuditReader(db, {})
    first = [(source, seq, e.fields["action"], e.source_address) for e, source, seq in reader.events()]
    mine = [row for row in first if row[0] == source_of(tenant.id)]
    assert [(r[2], r[3]) for r in mine] == [(Action.SIGN_IN_FAILED, f"192.0.2.{n}") for n in range(3)]
    event = next(e for e, source, _ in AuditReader(db, {}).events() if source == source_of(tenant.id))
    assert event.fields["tenant_id"] == str(tenant.id) and event.outcome == "failure"
    assert event.fields["details.reason"] == "password"

    failed(3)
    assert [(s, a) for s, _, a, _ in ((s, q, e.fields["action"], 0) for e, s, q in reader.events())] == [
        (source_of(tenant.id), Action.SIGN_IN_FAILED)
    ]
    # A new reader from the saved seqs (a restart) repeats nothing and misses nothing.
    saved = {source: seq for source, seq, _, _ in first}
    failed(4)
    again = [(e.source_address, s) for e, s, _ in AuditReader(db, saved).events() if s == source_of(tenant.id)]
    assert again == [("192.0.2.3", source_of(tenant.id)), ("192.0.2.4", source_of(tenant.id))]


def test_a_slow_engine_slows_collection_and_nothing_is_dropped(committed_db, tmp_path):
    log = tmp_path / "auth.log"
    lines = 60
    _sshd_failures(log, lines)
    seen: list[str] = []

    def slow(engine: Engine, event):
        time.sleep(0.01)
        seen.append(event.raw)
        return engine.feed(event)

    pipeline = Pipeline(
        committed_db,
        Engine(load(builtin_paths())),
        [TailedFile(log, Format.SYSLOG)],
        audit=False,
        queue_size=2,
        commit_every=5,
        poll_seconds=0.05,
        feed=slow,
    )
    _run(pipeline, lambda: pipeline.taken >= lines)

    assert seen == log.read_text().splitlines()  # every line, once, in order
    waited = pipeline.metrics.registry.get_sample_value(
        "bookwarden_monitor_reader_wait_seconds_total", {"source": f"file:{log}"}
    )
    assert waited > 0.1  # the reader waited for the engine (60 lines x 10 ms through a queue of 2)
    with platform_session(committed_db) as session:
        saved = session.get(Position, f"file:{log}")
    assert saved.offset == log.stat().st_size
    [alert] = _alerts(committed_db, "sshd_brute_force")
    assert alert.source_address == "203.0.113.9" and alert.count == 5  # the opening alert, at once
    # The stream goes quiet for longer than the rule's window: the episode closes, its final count replaces it.
    pipeline._last_event -= 300
    pipeline.step(wait=0)
    [alert] = _alerts(committed_db, "sshd_brute_force")
    assert alert.count == lines

    # A restart reads nothing again; a new burst goes on the same alert (it is still open).
    _sshd_failures(log, 5, pid=9000, start=600)
    again = Pipeline(committed_db, Engine(load(builtin_paths())), [TailedFile(log, Format.SYSLOG)], audit=False)
    _run(again, lambda: again.taken >= 5)
    assert again.taken == 5
    [alert] = _alerts(committed_db, "sshd_brute_force")
    assert alert.count == lines + 5


def test_requests_for_ids_that_do_not_exist_reach_the_rules_by_the_trail_and_the_access_log(
    committed_db, committed_tenant, home, tmp_path
):
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        token = tokens.issue_api_token(session, "prober", sorted(LIBRARY_READ), timedelta(hours=1))[1]
    access_log = tmp_path / "logs" / "access.log"
    app = create_app(committed_db, Settings(home=home, access_log=access_log))
    client = TestClient(app, client=("198.51.100.23", 50000), raise_server_exceptions=False)
    client.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "probe/1.0"})
    for _ in range(20):
        assert client.get(f"/api/v1/patrons/{uuid.uuid4()}").status_code == 404

    lines = access_log.read_text().splitlines()
    assert len(lines) == 20
    event = parse_access(lines[0])
    assert event.fields["route"] == "/api/v1/patrons/{record_id}" and event.fields["status"] == 404
    assert event.source_address == "198.51.100.23" and event.fields["user_agent"] == "probe/1.0"
    assert "/api/v1/patrons/{record_id}" in lines[0] and lines[0].count("patrons/") == 1  # the template, not the id

    pipeline = Pipeline(
        committed_db, Engine(load(builtin_paths())), [TailedFile(access_log, Format.ACCESS)], poll_seconds=0.05
    )
    _run(pipeline, lambda: bool(_alerts(committed_db, "platform_id_probing")))

    [alert] = _alerts(committed_db, "platform_id_probing")
    assert alert.source_address == "198.51.100.23" and alert.count == 20
    assert alert.institution_id == tenant_id  # every not-found event was in that institution's chain
    with platform_session(committed_db) as session:
        saved = session.get(Position, f"file:{access_log}")
    assert saved is not None


def test_from_now_the_trail_is_read_from_each_chains_head(db, tenant):
    audit.record_now(db, Action.SIGN_IN_FAILED, outcome=Outcome.DENIED, tenant_id=tenant.id)
    reader = AuditReader(db, {}, start_at_head=True)
    assert list(reader.events()) == []
    audit.record_now(db, Action.ACCESS_DENIED, outcome=Outcome.DENIED, tenant_id=tenant.id)
    assert [e.fields["action"] for e, _, _ in reader.events()] == [Action.ACCESS_DENIED]
