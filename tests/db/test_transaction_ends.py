"""How a session's transaction begins and ends, on really committed transactions (as production runs).

A tenant transaction begins with its context in one round trip (the BEGIN and set_config sent whole), and
ends with the audit append and the COMMIT sent whole; SQLAlchemy then only closes the session. These tests
try to break what that must keep: the context written into SQL only as a UUID, a session that recorded
nothing still committing, objects still readable after the close, a failure committing nothing and the
pooled connection going on, the driver's own error classes.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import text

from bookwarden.audit import record as audit
from bookwarden.audit import verify
from bookwarden.audit.events import Action
from bookwarden.audit.signing import TrustedKeys
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db import session as db_session
from bookwarden.db.session import run_simple, tenant_session
from bookwarden.library import records, schemas


def _actor(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())


def _patron_names(db, tenant_id) -> list[str]:
    with audit.acting(audit.Context(_actor(tenant_id))), tenant_session(db, tenant_id) as session:
        return sorted(p.name for p in records.list_page(session, records.PATRONS, cursor=None, limit=100).items)


@pytest.mark.parametrize(
    "value",
    [
        "', true); SELECT set_config('bookwarden.tenant_id', 'x",  # an injection attempt
        "3F2504E0-4F89-41D3-9A0C-0305E82C3301",  # a UUID, but not as Python writes one
        "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}",
        "3f2504e04f8941d39a0c0305e82c3301",
    ],
)
def test_the_tenant_context_reaches_sql_only_as_a_canonical_uuid(committed_db, value):
    with pytest.raises(ValueError), committed_db._session() as session:
        db_session._set_tenant(session.connection(), value)


def test_a_tenant_transaction_begins_in_its_context_and_the_context_dies_with_it(committed_db, committed_tenant):
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        in_context = session.execute(text("SELECT current_setting('bookwarden.tenant_id')")).scalar_one()
        status = session.connection().connection.driver_connection.info.transaction_status
    assert in_context == str(tenant_id) and status == psycopg.pq.TransactionStatus.INTRANS
    # The same pooled connection, next transaction: no tenant carried over.
    with committed_db.engine.connect() as conn:
        assert conn.execute(text("SELECT current_setting('bookwarden.tenant_id', true)")).scalar_one() in ("", None)


def test_a_session_that_recorded_nothing_still_commits(committed_db, committed_tenant):
    tenant_id = committed_tenant()
    with audit.acting(audit.Context(_actor(tenant_id))), tenant_session(committed_db, tenant_id) as session:
        records.create(session, records.PATRONS, schemas.PatronCreate(name="Ada"))
        session.info.pop(audit.PENDING)  # as a transaction that records no event: no append sends the COMMIT
    assert _patron_names(committed_db, tenant_id) == ["Ada"]


def test_objects_are_readable_after_the_append_committed_and_the_session_closed(committed_db, committed_tenant):
    tenant_id = committed_tenant()
    with audit.acting(audit.Context(_actor(tenant_id))), tenant_session(committed_db, tenant_id) as session:
        created = records.create(session, records.PATRONS, schemas.PatronCreate(name="Ada"))
        row, _ = records._fetch(session, records.PATRONS, created.id)
    assert (row.id, row.status.value, row.created_at is not None) == (created.id, "active", True)


def test_an_append_the_database_refuses_commits_nothing_and_raises_the_drivers_error(
    committed_db, committed_tenant
):
    tenant_id, other = committed_tenant(), committed_tenant()
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="tenant in context"),
        audit.acting(audit.Context(_actor(tenant_id))),
        tenant_session(committed_db, tenant_id) as session,
    ):
        records.create(session, records.PATRONS, schemas.PatronCreate(name="Ada"))
        # Another institution's chain for this transaction's events: the append function refuses it.
        audit.append_pending(session, other, commit=True)
    assert _patron_names(committed_db, tenant_id) == []
    for _ in range(committed_db.engine.pool.size() + 1):  # every pooled connection still works
        assert _patron_names(committed_db, tenant_id) == []


def test_statements_sent_whole_stop_at_the_first_error(committed_db):
    with committed_db.engine.connect() as conn:
        conn.begin()  # as a session's transaction: SQLAlchemy's rollback reaches the driver
        with pytest.raises(psycopg.errors.DivisionByZero):
            run_simple(conn, b"BEGIN; SELECT 1 / 0; SELECT pg_sleep(5)")
        assert conn.connection.driver_connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_audited_reads_on_one_connection_make_one_chain(committed_db, committed_tenant):
    """The one-statement append (one event) and the batch append (several) link into one chain."""
    tenant_id = committed_tenant()
    with audit.acting(audit.Context(_actor(tenant_id))):
        for batch in (1, 3, 1, 2, 1):
            with tenant_session(committed_db, tenant_id) as session:
                for _ in range(batch):
                    audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()))
    with tenant_session(committed_db, tenant_id) as session:
        seqs = list(session.execute(text("SELECT seq FROM audit_events ORDER BY seq")).scalars())
        head = session.execute(text("SELECT seq, hash, prev_hash FROM audit_heads")).one()
        last = session.execute(text("SELECT hash, prev_hash FROM audit_events ORDER BY seq DESC LIMIT 1")).one()
    assert seqs == list(range(1, 9))
    assert (head.seq, bytes(head.hash), bytes(head.prev_hash)) == (8, bytes(last.hash), bytes(last.prev_hash))
    assert verify.verify_chain(committed_db, tenant_id, TrustedKeys()).clean


def test_after_the_server_dropped_every_connection_one_transaction_fails_and_the_next_works(
    committed_db, committed_tenant, superuser_conn
):
    """The first statement of a transaction is sent whole, below SQLAlchemy: when it finds its connection
    gone, the pool's idle connections (opened to the same server, gone too) are dropped with it, as
    SQLAlchemy does on a disconnect, rather than each failing a request of its own."""
    tenant_id = committed_tenant()
    size = committed_db.engine.pool.size()
    sessions = [tenant_session(committed_db, tenant_id) for _ in range(size)]
    pids = [s.__enter__().execute(text("SELECT pg_backend_pid()")).scalar_one() for s in sessions]
    for s in sessions:  # the pool now holds `size` idle connections
        s.__exit__(None, None, None)
    superuser_conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) AS pid", (pids,))

    with pytest.raises(psycopg.OperationalError), tenant_session(committed_db, tenant_id) as session:
        session.execute(text("SELECT 1"))
    assert _patron_names(committed_db, tenant_id) == []  # the next transaction works at once
