"""File integrity: an operator proposes a baseline of a tree, another approves it, and scans tell what changed."""

from __future__ import annotations

import os
import tracemalloc
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bookwarden.core.config import Settings
from bookwarden.core.errors import Conflict, Forbidden, SegregationOfDutiesError
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session
from bookwarden.monitor import host_events
from bookwarden.monitor.alerts.models import StoredAlert
from bookwarden.monitor.engine import Engine
from bookwarden.monitor.fim import scan as scanning
from bookwarden.monitor.fim import service
from bookwarden.monitor.fim.models import BaselineStatus, FimBaseline
from bookwarden.monitor.fim.scan import ADDED, CHANGED, REMOVED, TAMPERED, findings_as_events
from bookwarden.monitor.sigma.load import builtin_paths, load


def operator(role: BuiltinRole = BuiltinRole.OPERATOR_OPS) -> Principal:
    return Principal(PrincipalKind.CONSOLE, uuid.uuid4(), None, BUILTIN_PERMISSIONS[role])


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "app"
    (root / "templates").mkdir(parents=True)
    (root / "code.py").write_text("print('hello')\n")
    (root / "templates" / "page.html").write_text("<p>hi</p>\n")
    (root / "settings.toml").write_text("mode = 'strict'\n")
    os.chmod(root / "settings.toml", 0o640)
    return root


@pytest.fixture
def fim_settings(home, tree) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    return Settings(home=home, fim_paths=str(tree), audit_signing_key=None, audit_retired_keys=None)


@pytest.fixture
def approved(db, fim_settings):
    """A baseline of the tree, proposed by one operator (ops) and approved by another (the CISO)."""
    baseline, _ = service.propose(db, operator(), fim_settings)
    with platform_session(db) as session:
        service.decide(session, operator(BuiltinRole.CISO), baseline.id, fim_settings, approve=True)
    return baseline


def scan(db, settings, **options):
    return service.scan(db, operator(), settings, **options)


def actions(outcome) -> dict[str, str]:
    return {Path(f.path).name: f.action for f in outcome.findings}


def test_an_untouched_tree_scans_clean_and_hashes_nothing(db, fim_settings, approved):
    outcome = scan(db, fim_settings)
    assert outcome.findings == []
    assert outcome.result.files == 5  # the root, a folder, three files
    assert outcome.result.hashed == 0  # inode, size, mtime and ctime unchanged: the fast path trusts the baseline


def test_added_removed_and_changed_files_are_reported_with_what_changed(db, fim_settings, approved, tree):
    (tree / "backdoor.py").write_text("import os\n")
    (tree / "templates" / "page.html").unlink()
    (tree / "code.py").write_text("print('owned')\n")
    os.chmod(tree / "settings.toml", 0o666)  # noqa: S103 - the change under test
    outcome = scan(db, fim_settings)
    found = {Path(f.path).name: f for f in outcome.findings}
    assert found["backdoor.py"].action == ADDED
    assert found["page.html"].action == REMOVED
    assert found["code.py"].action == CHANGED and "hash" in found["code.py"].changed
    assert found["settings.toml"].changed[:1] == ("mode",) and "hash" not in found["settings.toml"].changed
    assert (found["settings.toml"].before["mode"], found["settings.toml"].after["mode"]) == ("0640", "0666")
    assert set(found) == {"backdoor.py", "page.html", "code.py", "settings.toml"}


def test_touch_with_the_same_content_is_no_finding_but_is_re_hashed(db, fim_settings, approved, tree):
    os.utime(tree / "code.py", ns=(1_000_000_000, 1_000_000_000))
    outcome = scan(db, fim_settings)
    assert outcome.findings == []
    assert outcome.result.hashed == 1  # its mtime and ctime moved: read again, found the same
    assert outcome.result.touched == 1


def test_content_changed_with_mtime_set_back_is_caught_by_ctime(db, fim_settings, approved, tree, monkeypatch):
    target = tree / "code.py"
    before = target.stat()
    target.write_text("print('hellO')\n")  # same size, other bytes
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime restored; ctime cannot be
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    hashed = []
    real = scanning.hash_file
    monkeypatch.setattr(scanning, "hash_file", lambda path, algorithm: hashed.append(path) or real(path, algorithm))
    outcome = scan(db, fim_settings)
    assert hashed == [str(target)]  # only the file whose ctime moved was read
    assert [(f.action, Path(f.path).name) for f in outcome.findings] == [(CHANGED, "code.py")]
    assert outcome.findings[0].changed == ("hash", "ctime")


def test_the_fast_path_really_skips_hashing_and_full_does_not(db, fim_settings, approved, monkeypatch):
    calls = []
    real = scanning.hash_file
    monkeypatch.setattr(scanning, "hash_file", lambda path, algorithm: calls.append(path) or real(path, algorithm))
    assert scan(db, fim_settings).findings == []
    assert calls == []
    outcome = scan(db, fim_settings, full=True)
    assert outcome.full and outcome.findings == [] and len(calls) == 3


def test_a_full_re_hash_comes_when_the_last_full_scan_is_old(db, fim_settings, approved):
    hourly = fim_settings.model_copy(update={"fim_full_scan_hours": 1})
    assert scan(db, hourly).full is False  # the baseline itself was a full hash, just now
    assert scan(db, hourly, full=True).full is True
    with platform_session(db) as session:
        session.execute(text("UPDATE host_scans SET started_at = now() - interval '2 hours' WHERE \"full\""))
    assert scan(db, hourly).full is True  # the last full scan is two hours old
    assert scan(db, hourly).full is False  # the one just made counts
    # Moving the baseline's own time (to make a full scan look due, or not) breaks its signature.
    with platform_session(db) as session:
        session.execute(text("UPDATE fim_baselines SET signed_at = now() - interval '2 hours'"))
    assert scan(db, hourly).tampered is not None


def test_a_tampered_baseline_record_is_itself_a_finding(db, fim_settings, approved, tree):
    # Someone with the database hides a trojaned file: its row gets the new file's hash and metadata.
    (tree / "code.py").write_text("print('trojan')\n")
    fresh = scanning.scan([str(tree)], "blake3", full=True).entries[str(tree / "code.py")]
    with platform_session(db) as session:
        (records,) = session.execute(text("SELECT records FROM fim_pages")).scalars()
        stored = {entry.path: entry for entry in scanning.Entry.records(records)}
        forged = records.replace(stored[fresh.path].record(), fresh.record())
        assert forged != records
        session.execute(text("DELETE FROM fim_pages"))
        session.execute(text("INSERT INTO fim_pages VALUES (:b, 0, :r)"), {"b": approved.id, "r": forged})
    outcome = scan(db, fim_settings)
    assert outcome.tampered is not None and "records differ" in outcome.tampered
    assert outcome.findings[0].action == TAMPERED
    assert outcome.full  # nothing stored is trusted: every file was read again
    engine = Engine(load(builtin_paths()))
    alerts = [a.rule for e in findings_as_events(outcome.findings[:1]) for a in engine.feed(e)]
    assert alerts == ["host_fim_change"]  # the tampering alerts as a change on a protected path does


def test_a_baseline_signed_by_another_key_does_not_verify(db, fim_settings, approved):
    with platform_session(db) as session:
        session.execute(text("UPDATE fim_baselines SET entries_digest = :d"), {"d": bytes(32)})
    outcome = scan(db, fim_settings)
    assert outcome.tampered is not None and "signature" in outcome.tampered


def test_updating_the_baseline_needs_a_second_operator(db, fim_settings, tree):
    ops = operator()
    proposal, _ = service.propose(db, ops, fim_settings)
    with pytest.raises(service.NoBaseline):  # proposed is not approved: nothing to compare with yet
        scan(db, fim_settings)
    # The same person through another credential (an operator token they own) is still the proposer.
    token = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, ops.permissions, owner_id=ops.id)
    for same in (ops, token):
        with pytest.raises(SegregationOfDutiesError), platform_session(db) as session:
            service.decide(session, same, proposal.id, fim_settings, approve=True)
    with pytest.raises(Forbidden), platform_session(db) as session:  # support holds no fim permission
        service.decide(session, operator(BuiltinRole.OPERATOR_SUPPORT), proposal.id, fim_settings, approve=True)
    with platform_session(db) as session:
        assert session.get(FimBaseline, proposal.id).status == BaselineStatus.PROPOSED
        service.decide(session, operator(BuiltinRole.CISO), proposal.id, fim_settings, approve=True)
    (tree / "new.txt").write_text("accepted later\n")
    assert actions(scan(db, fim_settings)) == {"new.txt": ADDED}
    # A new proposal replaces nothing until approved; approving it supersedes the old one.
    second, diff = service.propose(db, ops, fim_settings)
    assert [f.action for f in diff.findings] == [ADDED]
    assert actions(scan(db, fim_settings)) == {"new.txt": ADDED}
    with platform_session(db) as session:
        service.decide(session, operator(BuiltinRole.CISO), second.id, fim_settings, approve=True)
        assert session.get(FimBaseline, proposal.id).status == BaselineStatus.SUPERSEDED
        with pytest.raises(Conflict):
            service.decide(session, operator(BuiltinRole.CISO), second.id, fim_settings, approve=True)
    assert scan(db, fim_settings).findings == []


def test_the_database_itself_refuses_the_proposer_as_decider(db, fim_settings):
    proposal, _ = service.propose(db, operator(), fim_settings)
    with pytest.raises(Exception, match="checker_is_not_maker"), platform_session(db) as session:
        session.execute(
            text("UPDATE fim_baselines SET status = 'active', decided_by = proposed_by WHERE id = :id"),
            {"id": proposal.id},
        )


def test_a_proposal_altered_before_approval_is_refused(db, fim_settings, tree):
    proposal, _ = service.propose(db, operator(), fim_settings)
    with platform_session(db) as session:
        session.execute(text("DELETE FROM fim_pages"))
    with pytest.raises(Conflict, match="altered"), platform_session(db) as session:
        service.decide(session, operator(BuiltinRole.CISO), proposal.id, fim_settings, approve=True)


def test_reading_results_needs_the_permission(db, fim_settings, approved):
    nobody = Principal(PrincipalKind.CONSOLE, uuid.uuid4(), None, frozenset({Permission.PLATFORM_USAGE_READ}))
    with pytest.raises(Forbidden):
        service.scan(db, nobody, fim_settings)
    with pytest.raises(Forbidden):
        service.propose(db, nobody, fim_settings)


def test_sha256_is_selectable(db, fim_settings, tree):
    chosen = fim_settings.model_copy(update={"fim_algorithm": "sha256"})
    baseline, result = service.propose(db, operator(), chosen)
    assert baseline.algorithm == "sha256"
    import hashlib

    assert result.entries[str(tree / "code.py")].digest == hashlib.sha256(b"print('hello')\n").digest()


def test_hashing_a_large_file_streams_in_bounded_memory(tmp_path):
    big = tmp_path / "big.bin"
    chunk = os.urandom(1 << 20)
    with big.open("wb") as out:
        for _ in range(48):
            out.write(chunk)
    scanning.hash_file(str(big), "blake3")  # the thread's buffer exists before measuring
    tracemalloc.start()
    try:
        digest = scanning.hash_file(str(big), "blake3")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024  # 48 MiB hashed, far less held at once
    import blake3

    assert digest == blake3.blake3(chunk * 48).digest()


def test_findings_become_events_the_host_rule_alerts_on(db, fim_settings, approved, tree):
    (tree / "code.py").write_text("print('owned')\n")
    outcome = scan(db, fim_settings)
    events = findings_as_events(outcome.findings)
    assert [e.get("action") for e in events] == [CHANGED]
    assert events[0].get("path") == str(tree / "code.py") and events[0].get("changed") == ["hash", "mtime", "ctime"]
    engine = Engine(load(builtin_paths()))
    alerts = [alert for event in events for alert in engine.feed(event)]
    assert [a.rule for a in alerts] == ["host_fim_change"]


def test_the_hourly_job_hands_its_findings_to_the_registered_sinks(db, fim_settings, approved, tree, monkeypatch):
    from bookwarden.core.config import get_settings
    from bookwarden.jobs.service import handler_for
    from bookwarden.monitor import host_events
    from bookwarden.monitor.fim.jobs import SCAN_JOB

    monkeypatch.setattr(host_events, "_sinks", [])
    received = []
    host_events.register(lambda _db, events: received.extend(events))
    monkeypatch.setenv("BOOKWARDEN_HOME", str(fim_settings.home))
    monkeypatch.setenv("BOOKWARDEN_FIM_PATHS", str(tree))
    get_settings.cache_clear()
    try:
        (tree / "dropped.sh").write_text("#!/bin/sh\n")
        handler_for(SCAN_JOB)(db, {})
    finally:
        get_settings.cache_clear()
    assert [(e.get("action"), Path(e.get("path")).name) for e in received] == [(ADDED, "dropped.sh")]


def test_records_round_trip_names_with_newlines_and_odd_bytes(tmp_path):
    (tmp_path / "two\nlines").write_text("x")
    (tmp_path / os.fsdecode(b"latin\xe9")).write_text("y")
    (tmp_path / "link").symlink_to("two\nlines")
    entries = scanning.scan([str(tmp_path)], "blake3", full=True).entries
    stored = b"".join(e.record() for e in entries.values())
    assert {e.path: e for e in scanning.Entry.records(stored)} == entries
    assert str(tmp_path / "latin\\xe9") in entries  # an undecodable name kept, escaped


def test_a_finding_becomes_a_stored_alert_through_the_registered_alert_store(db, fim_settings, approved, tree):
    """No sink patched: the alert store registered itself (monitor/alerts/hooks.py), so a changed file is an alert
    operators see, grouped with its repeats."""
    (tree / "code.py").write_text("print('owned')\n")
    host_events.publish(db, findings_as_events(scan(db, fim_settings).findings))
    with platform_session(db) as session:
        stored = session.scalars(select(StoredAlert).where(StoredAlert.rule == "host_fim_change")).all()
    assert [(a.rule, a.count, a.severity) for a in stored] == [("host_fim_change", 1, "high")]
