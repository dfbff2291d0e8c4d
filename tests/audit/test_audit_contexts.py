"""Where an event was done from is kept apart from the hashed event, and forgotten without breaking the chain.

An event hashes a commitment to its source address and user agent (format 2); the values sit in
audit_event_contexts with the event's own commitment key. They go after at most 90 days (the period job, in
every chain) and when a patron the event is about is erased; `audit verify` passes over the whole chain
afterwards, on really committed transactions, and still catches a value changed while it is kept, a changed
commitment, and an address written back into the hashed row. Events recorded before migration 0026 (format 1)
hashed the values themselves: they verify with their own encoding, beside the new ones, and keep them.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text

from bookwarden.audit import bundle, checkpoints, retention, search, signing, verify
from bookwarden.audit import record as audit
from bookwarden.audit.events import PLATFORM_CHAIN, Action, Event, Outcome
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.privacy.retention import jobs as retention_jobs
from bookwarden.privacy.subjects import erasure

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
DESK = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])


@pytest.fixture
def key() -> signing.SigningKey:
    return signing.SigningKey.from_seed(os.urandom(32))


def _staff(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, DESK)


def _from(address: str, principal: Principal | None = None) -> audit.Context:
    return audit.Context(principal, address, BROWSER, f"req-{uuid.uuid4().hex[:8]}")


def _view(db, tenant_id, address: str, target=None, n: int = 1) -> None:
    with audit.acting(_from(address, _staff(tenant_id))):
        for _ in range(n):
            with tenant_session(db, tenant_id) as session:
                audit.record(session, Action.PATRON_VIEWED, ("patron", target or uuid.uuid4()))


def _kept(db, tenant_id) -> dict[int, tuple[str, str]]:
    with tenant_session(db, tenant_id) as session:
        rows = session.execute(text("SELECT seq, source_address, user_agent FROM audit_event_contexts ORDER BY seq"))
        return {seq: (address, agent) for seq, address, agent in rows}


def _searched(db, tenant_id) -> dict[int, dict]:
    query = search.EventQuery(order=search.Order.OLDEST)
    with tenant_session(db, tenant_id) as session:
        return {e["seq"]: e for e in search.search(session, query, limit=search.MAX_PAGE).events}


def _check(db, tenant_id, key) -> verify.ChainReport:
    return verify.verify_chain(db, tenant_id, signing.TrustedKeys(key.public))


def _age(superuser_conn, tenant_id, seqs, days: int) -> None:
    superuser_conn.execute(
        "UPDATE audit_event_contexts SET occurred_at = now() - make_interval(days => %s) "
        "WHERE tenant_id = %s AND seq = ANY(%s)",
        (days, tenant_id, list(seqs)),
    )


def _seal(db, tenant_id, key) -> None:
    with tenant_session(db, tenant_id) as session:
        checkpoints.make_checkpoint(session, key)


# -- what is hashed, what is kept apart ------------------------------------------------------------------


def test_the_chain_hashes_a_commitment_and_search_shows_the_values_kept_apart(db, tenant, key):
    _view(db, tenant.id, "198.51.100.7")
    # A job's event: no address, no agent.
    with audit.acting(audit.Context(_staff(tenant.id))), tenant_session(db, tenant.id) as session:
        audit.record(session, Action.LOAN_LISTED)
    with tenant_session(db, tenant.id) as session:
        hashed = session.execute(
            text("SELECT seq, source_address, user_agent, format, context_commitment FROM audit_events ORDER BY seq")
        ).all()
    assert [(r.seq, r.source_address, r.user_agent, r.format) for r in hashed] == [
        (1, None, None, 2),
        (2, None, None, 2),
    ]
    assert hashed[0].context_commitment is not None and hashed[1].context_commitment is None
    assert _kept(db, tenant.id) == {1: ("198.51.100.7", BROWSER)}  # one row, only for the event that had them
    found = _searched(db, tenant.id)
    assert (found[1]["source_address"], found[1]["user_agent"], found[1]["context"]) == ("198.51.100.7", BROWSER,
                                                                                         "kept")  # fmt: skip
    assert (found[2]["source_address"], found[2]["context"]) == (None, "none")


def test_the_application_can_read_and_forget_a_context_but_never_write_or_change_one(db, tenant, other_tenant):
    _view(db, tenant.id, "198.51.100.8")
    with pytest.raises(Exception) as refused, tenant_session(db, tenant.id) as session:
        session.execute(
            text("INSERT INTO audit_event_contexts VALUES (:t, 99, now(), '203.0.113.1', 'forged', '\\x00')"),
            {"t": tenant.id},
        )
    assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
    with pytest.raises(Exception) as refused, tenant_session(db, tenant.id) as session:
        session.execute(text("UPDATE audit_event_contexts SET source_address = '203.0.113.1'"))
    assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
    assert _kept(db, other_tenant.id) == {}  # another institution reads none of them
    with tenant_session(db, other_tenant.id) as session:
        assert session.execute(text("DELETE FROM audit_event_contexts")).rowcount == 0
    assert _kept(db, tenant.id) == {1: ("198.51.100.8", BROWSER)}


# -- the period --------------------------------------------------------------------------------------------


def test_contexts_go_after_their_period_in_every_chain_and_every_chain_still_verifies(
    committed_db, committed_tenant, superuser_conn, key
):
    first, second = committed_tenant(), committed_tenant()
    for tenant_id in (first, second):
        _view(committed_db, tenant_id, "198.51.100.20", n=3)
        _seal(committed_db, tenant_id, key)  # seq 4: the checkpoint's own event
        _view(committed_db, tenant_id, "198.51.100.21", n=2)
        _age(superuser_conn, tenant_id, [1, 2, 3], days=91)
        _age(superuser_conn, tenant_id, [5], days=89)
    with audit.acting(_from("198.51.100.22")), platform_session(committed_db) as session:
        audit.record(session, Action.TENANT_LISTED)
    with tenant_session(committed_db, PLATFORM_CHAIN) as session:
        platform_seq = session.execute(text("SELECT max(seq) FROM audit_event_contexts")).scalar_one()
    _age(superuser_conn, PLATFORM_CHAIN, [platform_seq], days=120)

    retention_jobs.forget_audit_contexts(committed_db)

    for tenant_id in (first, second):
        assert set(_kept(committed_db, tenant_id)) == {5, 6}  # 89 days old, and new; the checkpoint event had none
        found = _searched(committed_db, tenant_id)
        assert [found[s]["context"] for s in (1, 2, 3, 4, 5, 6)] == ["purged"] * 3 + ["none", "kept", "kept"]
        assert found[1]["source_address"] is None and found[5]["source_address"] == "198.51.100.21"
        (enforced,) = [e for e in found.values() if e["action"] == Action.PERIOD_ENFORCED]
        assert enforced["details"]["job"] == "audit.forget_contexts" and enforced["details"]["count"] == 3
        assert "198.51.100" not in json.dumps(enforced["details"])  # ids and counts, never a value
        report = _check(committed_db, tenant_id, key)
        assert report.clean, report.finding
        assert report.checkpoints == 1
    with tenant_session(committed_db, PLATFORM_CHAIN) as session:
        assert session.execute(
            text("SELECT count(*) FROM audit_event_contexts WHERE seq = :s"), {"s": platform_seq}
        ).scalar_one() == 0  # fmt: skip
    assert _check(committed_db, PLATFORM_CHAIN, key).clean

    # Run again: nothing left past the period, nothing else touched.
    retention_jobs.forget_audit_contexts(committed_db)
    assert set(_kept(committed_db, first)) >= {5, 6}


def test_the_setting_shortens_the_period_and_cannot_lengthen_it(
    committed_db, committed_tenant, superuser_conn, monkeypatch
):
    tenant_id = committed_tenant()
    _view(committed_db, tenant_id, "198.51.100.30", n=2)
    _age(superuser_conn, tenant_id, [1], days=31)
    _age(superuser_conn, tenant_id, [2], days=29)
    monkeypatch.setenv("BOOKWARDEN_AUDIT_CONTEXT_DAYS", "30")
    get_settings.cache_clear()
    try:
        retention_jobs._forget_audit_contexts_job(committed_db, {})
    finally:
        monkeypatch.delenv("BOOKWARDEN_AUDIT_CONTEXT_DAYS")
        get_settings.cache_clear()
    assert set(_kept(committed_db, tenant_id)) == {2}
    monkeypatch.setenv("BOOKWARDEN_AUDIT_CONTEXT_DAYS", "365")
    with pytest.raises(ValueError, match="less than or equal to 90"):
        get_settings.cache_clear()
        get_settings()
    monkeypatch.delenv("BOOKWARDEN_AUDIT_CONTEXT_DAYS")
    get_settings.cache_clear()


def test_a_dropped_segment_takes_its_contexts_with_it(committed_db, committed_tenant, key):
    tenant_id = committed_tenant()
    _view(committed_db, tenant_id, "198.51.100.35", n=3)
    _seal(committed_db, tenant_id, key)  # seals 1-3; its own event is seq 4
    _view(committed_db, tenant_id, "198.51.100.36", n=2)  # unsealed: stays
    with tenant_session(committed_db, tenant_id) as session:
        drop = retention.drop_expired_segment(session, timedelta(0))
    assert drop.upto_seq == 3
    assert set(_kept(committed_db, tenant_id)) == {5, 6}
    assert _check(committed_db, tenant_id, key).clean


# -- erasure -------------------------------------------------------------------------------------------------


def test_erasing_a_patron_forgets_where_their_events_came_from_and_the_chain_still_verifies(
    committed_db, committed_tenant, key
):
    tenant_id = committed_tenant()
    staff = _staff(tenant_id)
    with audit.acting(_from("198.51.100.40", staff)), tenant_session(committed_db, tenant_id) as session:
        erased_id = library.create(session, library.PATRONS, PatronCreate(name="Erin Erased")).id
        kept_id = library.create(session, library.PATRONS, PatronCreate(name="Kim Kept")).id
    _view(committed_db, tenant_id, "198.51.100.41", target=erased_id, n=2)
    _view(committed_db, tenant_id, "198.51.100.42", target=kept_id)
    with tenant_session(committed_db, tenant_id) as session:
        about = dict(session.execute(text("SELECT seq, target_id FROM audit_events WHERE target_id IS NOT NULL")).all())
    erased_seqs = {s for s, t in about.items() if t == erased_id}
    kept_seqs = {s for s, t in about.items() if t == kept_id}
    assert erased_seqs and kept_seqs and erased_seqs <= set(_kept(committed_db, tenant_id))

    with tenant_session(committed_db, tenant_id) as session:
        certificate = erasure.erase_patron(session, erased_id, signing_key=key)

    left = _kept(committed_db, tenant_id)
    assert not erased_seqs & set(left)
    assert kept_seqs <= set(left)
    (location,) = [e for e in certificate.statement["locations"] if e["table"] == "audit_event_contexts"]
    assert (location["action"], location["rows"], location["categories"]) == (
        "deleted", len(erased_seqs), ["device_network"]
    )  # fmt: skip
    found = _searched(committed_db, tenant_id)
    assert {found[s]["context"] for s in erased_seqs} == {"purged"}
    assert {found[s]["context"] for s in kept_seqs} == {"kept"}
    report = _check(committed_db, tenant_id, key)
    assert report.clean, report.finding


# -- tampering --------------------------------------------------------------------------------------------


@pytest.fixture
def forgotten(committed_db, committed_tenant, superuser_conn, key):
    """A committed chain of 6 events: 1-3 with their contexts forgotten by the period job, 4-6 kept."""
    tenant_id = committed_tenant()
    _view(committed_db, tenant_id, "198.51.100.50", n=6)
    _age(superuser_conn, tenant_id, [1, 2, 3], days=100)
    retention_jobs.forget_audit_contexts(committed_db)
    assert set(_kept(committed_db, tenant_id)) == {4, 5, 6}
    assert _check(committed_db, tenant_id, key).clean
    return tenant_id


def change_a_kept_address(conn, t):
    conn.execute("UPDATE audit_event_contexts SET source_address = '203.0.113.9' WHERE tenant_id = %s AND seq = 5",
                 (t,))  # fmt: skip


def change_a_kept_user_agent(conn, t):
    conn.execute("UPDATE audit_event_contexts SET user_agent = 'curl/8.5' WHERE tenant_id = %s AND seq = 4", (t,))


def change_a_commitment(conn, t):
    conn.execute("UPDATE audit_events SET context_commitment = sha256(context_commitment) "
                 "WHERE tenant_id = %s AND seq = 2", (t,))  # fmt: skip


def write_an_address_into_the_hashed_row(conn, t):
    conn.execute("UPDATE audit_events SET source_address = '203.0.113.9' WHERE tenant_id = %s AND seq = 3", (t,))


def pass_an_event_for_an_old_one(conn, t):
    conn.execute("UPDATE audit_events SET format = 1 WHERE tenant_id = %s AND seq = 2", (t,))


def give_a_forgotten_event_a_context_again(conn, t):
    conn.execute(
        "INSERT INTO audit_event_contexts SELECT tenant_id, 1, occurred_at, '203.0.113.9', user_agent, "
        "commitment_key FROM audit_event_contexts WHERE tenant_id = %s AND seq = 4",
        (t,),
    )


TAMPERING = [
    (change_a_kept_address, 5, "differs from what the event committed to"),
    (change_a_kept_user_agent, 4, "differs from what the event committed to"),
    (change_a_commitment, 2, "do not match the event's body digest"),
    (write_an_address_into_the_hashed_row, 3, "do not match the event's body digest"),
    (pass_an_event_for_an_old_one, 2, "do not match the event's body digest"),
    (give_a_forgotten_event_a_context_again, 1, "differs from what the event committed to"),
]


@pytest.mark.parametrize(("tamper", "seq", "words"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING])
def test_tampering_with_commitments_or_kept_values_is_caught_after_a_purge(
    committed_db, forgotten, superuser_conn, key, tamper, seq, words
):
    tamper(superuser_conn, forgotten)
    report = _check(committed_db, forgotten, key)
    assert not report.clean
    assert words in report.finding.problem, report.finding
    assert report.finding.seq == seq, report.finding


# -- events recorded before migration 0026 ---------------------------------------------------------------------


def _append_old_format(db, tenant_id, address: str) -> None:
    """An event as the release before 0026 appended it: format 1, the address and agent in the hashed body."""
    event = Event(uuid.uuid4(), datetime.now(UTC), "api_token", uuid.uuid4(), None, "patron.viewed", "patron",
                  uuid.uuid4(), Outcome.SUCCEEDED.value, address, BROWSER, "req-old", {"fields": ["name"]})  # fmt: skip
    row = audit._row(event)
    row.pop("format")  # the old release did not send one
    with tenant_session(db, tenant_id) as session:
        session.execute(audit.APPEND, {"chain": tenant_id, "events": json.dumps([row])})


def test_events_recorded_before_the_change_verify_beside_new_ones_and_keep_their_values(
    committed_db, committed_tenant, superuser_conn, key, tmp_path
):
    tenant_id = committed_tenant()
    _append_old_format(committed_db, tenant_id, "198.51.100.60")
    _view(committed_db, tenant_id, "198.51.100.61")
    _append_old_format(committed_db, tenant_id, "198.51.100.62")
    _seal(committed_db, tenant_id, key)
    with tenant_session(committed_db, tenant_id) as session:
        stored = session.execute(text("SELECT seq, format, source_address FROM audit_events ORDER BY seq")).all()
    assert [tuple(r) for r in stored[:3]] == [(1, 1, "198.51.100.60"), (2, 2, None), (3, 1, "198.51.100.62")]
    _age(superuser_conn, tenant_id, [2], days=100)
    retention_jobs.forget_audit_contexts(committed_db)
    found = _searched(committed_db, tenant_id)
    # The old events hashed their values: they keep them (until their segment goes); the new one is purged.
    assert [(found[s]["source_address"], found[s]["context"]) for s in (1, 2, 3)] == [
        ("198.51.100.60", "kept"), (None, "purged"), ("198.51.100.62", "kept")
    ]  # fmt: skip
    assert _check(committed_db, tenant_id, key).clean

    # A bundle of the mixed chain verifies with no database: old lines name the address, new ones do not.
    path = tmp_path / "trail.tar.gz"
    bundle.export_bundle(committed_db, tenant_id, path, [key.public])
    report, _ = bundle.verify_bundle(path, [key.public])
    assert report.clean, report.finding

    superuser_conn.execute(
        "UPDATE audit_events SET source_address = '203.0.113.9' WHERE tenant_id = %s AND seq = 3", (tenant_id,)
    )
    report = _check(committed_db, tenant_id, key)
    assert not report.clean and report.finding.seq == 3
