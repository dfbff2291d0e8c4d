"""The audit chain: numbered, hash-linked, appended only with the action, refused every change."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from sqlalchemy import text

from bookwarden.audit import record as audit
from bookwarden.audit.events import GENESIS, PLATFORM_CHAIN, Action, Event, Outcome, chain_hash, context_commitment
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db import provision
from bookwarden.db.session import platform_session, tenant_session

COLUMNS = (
    "seq, id, occurred_at, actor_kind, actor_id, grant_id, action, target_kind, target_id, outcome, "
    "source_address, user_agent, request_id, details, body_digest, prev_hash, hash, format, context_commitment"
)


def actor(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())


def rows(session):
    return session.execute(text(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq")).mappings().all()  # noqa: S608


def recomputed(row) -> Event:
    return Event(
        **{k: row[k] for k in ("id", "occurred_at", "actor_kind", "actor_id", "grant_id", "action", "target_kind")},
        **{k: row[k] for k in ("target_id", "outcome", "source_address", "user_agent", "request_id", "details")},
        format=row["format"],
        context_commitment=bytes(row["context_commitment"]) if row["context_commitment"] is not None else None,
    )


def assert_chained(events) -> None:
    prev = GENESIS
    for n, row in enumerate(events, start=1):
        assert row["seq"] == n
        digest = recomputed(row).body_digest()
        assert bytes(row["body_digest"]) == digest
        assert bytes(row["prev_hash"]) == prev
        prev = chain_hash(prev, n, digest)
        assert bytes(row["hash"]) == prev


@pytest.fixture(params=["rolled back", "committed"])
def db(request, db):
    """Each test taking `db` runs twice: in a rolled-back transaction, and on really committed ones (the
    append sent with the COMMIT, as in production), with both institutions' chains holding events."""
    if request.param == "committed":
        return request.getfixturevalue("committed_db")
    return db


def test_events_are_numbered_and_chained_with_what_was_recorded(db, tenant):
    who = actor(tenant.id)
    context = audit.Context(who, "192.0.2.7", "Mozilla/5.0 ünïcode", "req-12345678")
    target = uuid.uuid4()
    with audit.acting(context):
        with tenant_session(db, tenant.id) as session:
            audit.record(session, Action.PATRON_VIEWED, ("patron", target), details={"fields": ["name", "email"]})
            audit.record(session, Action.PATRON_CHANGED, ("patron", target), details={"ids": [target], "n": 2})
        with tenant_session(db, tenant.id) as session:
            audit.record(session, Action.ACCESS_DENIED, outcome=Outcome.DENIED, details={"permission": "x"})
    with tenant_session(db, tenant.id) as session:
        events = rows(session)
    assert [e["action"] for e in events] == ["patron.viewed", "patron.changed", "access.denied"]
    first = events[0]
    assert (first["actor_kind"], first["actor_id"], first["target_id"]) == ("api_token", who.id, target)
    # The address and user agent are kept apart; the hashed event holds their commitment (format 2).
    assert (first["source_address"], first["user_agent"], first["request_id"]) == (None, None, "req-12345678")
    assert first["format"] == 2
    with tenant_session(db, tenant.id) as session:
        kept = session.execute(
            text("SELECT seq, source_address, user_agent, commitment_key FROM audit_event_contexts ORDER BY seq")
        ).all()
    assert [(seq, address, agent) for seq, address, agent, _ in kept] == [
        (n, "192.0.2.7", "Mozilla/5.0 ünïcode") for n in (1, 2, 3)
    ]
    assert bytes(first["context_commitment"]) == context_commitment(
        bytes(kept[0].commitment_key), "192.0.2.7", "Mozilla/5.0 ünïcode"
    )
    assert len({bytes(k) for *_, k in kept}) == 3  # a key of its own per event
    assert events[1]["details"] == {"ids": [str(target)], "n": 2}
    assert_chained(events)


def test_an_action_that_rolls_back_leaves_no_event(db, tenant):
    with pytest.raises(RuntimeError), tenant_session(db, tenant.id) as session:
        audit.record(session, Action.PATRON_DELETED, ("patron", uuid.uuid4()), actor=actor(tenant.id))
        raise RuntimeError("the action failed")
    with tenant_session(db, tenant.id) as session:
        assert rows(session) == []


def test_each_tenant_has_its_own_chain_and_sees_only_it(db, tenant, other_tenant):
    for t in (tenant, other_tenant, tenant):
        with tenant_session(db, t.id) as session:
            audit.record(session, Action.LOAN_CREATED, ("loan", uuid.uuid4()), actor=actor(t.id))
    with tenant_session(db, tenant.id) as session:
        mine = rows(session)
    with tenant_session(db, other_tenant.id) as session:
        theirs = rows(session)
    assert [e["seq"] for e in mine] == [1, 2] and [e["seq"] for e in theirs] == [1]
    assert_chained(mine)
    assert_chained(theirs)


def test_platform_events_go_to_the_platform_chain(db, tenant):
    with platform_session(db) as session:
        audit.record(session, Action.TENANT_SUSPENDED, ("tenant", tenant.id), actor=actor(None))
        assert session.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 0  # no context reads none
    with tenant_session(db, PLATFORM_CHAIN) as session:
        platform = rows(session)
    with tenant_session(db, tenant.id) as session:
        assert rows(session) == []
    assert [e["action"] for e in platform][-1] == "tenant.suspended"


def test_details_refuse_values_the_encoding_cannot_reproduce(db, tenant):
    with tenant_session(db, tenant.id) as session:
        with pytest.raises(TypeError, match="ratio"):
            audit.record(session, Action.PATRON_LISTED, details={"ratio": 0.5}, actor=actor(tenant.id))
        with pytest.raises(ValueError, match="NUL"):
            audit.record(session, Action.PATRON_LISTED, details={"q": "a\x00b"}, actor=actor(tenant.id))


def test_the_app_cannot_append_to_another_tenants_chain(db, tenant, other_tenant):
    with pytest.raises(Exception, match="tenant in context"), tenant_session(db, tenant.id) as session:
        session.execute(
            text("SELECT bookwarden_audit_append(:t, '[]'::jsonb)"),
            {"t": other_tenant.id},
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET outcome = 'succeeded'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "INSERT INTO audit_events SELECT * FROM audit_events",
        "UPDATE audit_heads SET seq = 0",
        "INSERT INTO audit_segment_drops (tenant_id, upto_seq, last_hash) VALUES (bookwarden_current_tenant(), 1, '')",
    ],
)
def test_the_app_role_may_only_read_and_append(db, tenant, statement):
    with tenant_session(db, tenant.id) as session:
        audit.record(session, Action.POST_CREATED, ("post", uuid.uuid4()), actor=actor(tenant.id))
    with pytest.raises(Exception, match="permission denied"), tenant_session(db, tenant.id) as session:
        session.execute(text(statement))


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_events SET outcome = 'denied'", "DELETE FROM audit_events", "TRUNCATE audit_events"],
)
def test_even_the_owner_cannot_change_the_trail(committed_db, database_urls, committed_tenant, statement):
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        audit.record(session, Action.POST_CREATED, ("post", uuid.uuid4()), actor=actor(tenant_id))
    with psycopg.connect(provision.libpq(database_urls.owner)) as conn:
        conn.execute("SELECT set_config('bookwarden.tenant_id', %s, false)", (str(tenant_id),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)


@pytest.mark.parametrize("per_transaction", [1, 2], ids=["one event: one statement", "two events: batch"])
def test_concurrent_writers_never_share_a_sequence_number_or_predecessor(
    committed_db, committed_tenant, per_transaction
):
    tenant_id = committed_tenant()
    writers, per_writer = 4, 40
    failures = []

    def write():
        try:
            for _ in range(per_writer):
                with tenant_session(committed_db, tenant_id) as session:
                    for _ in range(per_transaction):
                        audit.record(session, Action.SEARCH_VIEWED, ("search", uuid.uuid4()), actor=actor(tenant_id))
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    with tenant_session(committed_db, tenant_id) as session:
        events = rows(session)
        head = session.execute(text("SELECT seq, hash FROM audit_heads")).one()
    assert len(events) == writers * per_writer * per_transaction
    assert_chained(events)
    assert len({bytes(e["prev_hash"]) for e in events}) == len(events)
    assert (head.seq, bytes(head.hash)) == (events[-1]["seq"], bytes(events[-1]["hash"]))



def _commit_mode_after_append(db, tenant_id, wrote_first: bool) -> str:
    with tenant_session(db, tenant_id) as session:
        if wrote_first:
            # What any INSERT, UPDATE or DELETE does first: take a transaction id.
            session.execute(text("SELECT pg_current_xact_id()"))
        audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), actor=actor(tenant_id))
        audit.append_pending(session, tenant_id, commit=False)
        return session.execute(text("SHOW synchronous_commit")).scalar_one()


def test_a_read_commits_its_events_without_waiting_for_the_disk_and_a_change_waits(committed_db, committed_tenant):
    tenant_id = committed_tenant()
    assert _commit_mode_after_append(committed_db, tenant_id, wrote_first=False) == "off"
    assert _commit_mode_after_append(committed_db, tenant_id, wrote_first=True) == "on"
    # The setting dies with its transaction: the next one waits for the disk again.
    with tenant_session(committed_db, tenant_id) as session:
        assert session.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
        events = rows(session)
    assert_chained(events)


def test_a_real_patron_change_is_committed_synchronously(committed_db, committed_tenant):
    from bookwarden.library import records, schemas

    tenant_id = committed_tenant()
    with audit.acting(audit.Context(actor(tenant_id))), tenant_session(committed_db, tenant_id) as session:
        records.create(session, records.PATRONS, schemas.PatronCreate(name="Ada"))
        audit.append_pending(session, tenant_id, commit=False)
        assert session.execute(text("SHOW synchronous_commit")).scalar_one() == "on"


# -- the append and the commit in one round trip ------------------------------------------------


def _patrons(db, tenant_id) -> list[str]:
    with tenant_session(db, tenant_id) as session:
        return list(session.execute(text("SELECT id::text FROM patrons")).scalars())


def test_an_append_that_fails_in_the_pipeline_commits_nothing_and_the_connection_goes_on(
    committed_db, committed_tenant, monkeypatch
):
    from bookwarden.library import records, schemas

    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), actor=actor(tenant_id))
    monkeypatch.setattr(audit, "_row", lambda event: {**_original_row(event), "body_digest": "not hex"})

    with pytest.raises(psycopg.Error), tenant_session(committed_db, tenant_id) as session:
        records.create(session, records.PATRONS, schemas.PatronCreate(name="Ada"))
        audit.record(session, Action.PATRON_CHANGED, ("patron", uuid.uuid4()), actor=actor(tenant_id))

    monkeypatch.undo()
    assert _patrons(committed_db, tenant_id) == []  # the action went with its refused event
    with tenant_session(committed_db, tenant_id) as session:  # the pooled connections still work
        audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), actor=actor(tenant_id))
    with tenant_session(committed_db, tenant_id) as session:
        events = rows(session)
    assert [e["action"] for e in events] == ["patron.viewed", "patron.viewed"]
    assert_chained(events)


_original_row = audit._row


def test_a_server_gone_at_commit_loses_the_action_and_its_connection_not_the_pool(
    committed_db, committed_tenant, superuser_conn
):
    from bookwarden.library import records, schemas

    tenant_id = committed_tenant()
    with pytest.raises(psycopg.OperationalError), tenant_session(committed_db, tenant_id) as session:
        records.create(session, records.PATRONS, schemas.PatronCreate(name="Ada"))
        session.flush()
        audit.record(session, Action.PATRON_CHANGED, ("patron", uuid.uuid4()), actor=actor(tenant_id))
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        superuser_conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))

    assert _patrons(committed_db, tenant_id) == []
    for _ in range(committed_db.engine.pool.size() + 1):  # every pooled connection handed out works
        with tenant_session(committed_db, tenant_id) as session:
            audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), actor=actor(tenant_id))
    with tenant_session(committed_db, tenant_id) as session:
        events = rows(session)
    assert len(events) == committed_db.engine.pool.size() + 1
    assert_chained(events)
