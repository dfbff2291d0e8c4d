"""Engines, sessions and the tenant context.

`tenant_session()` is the only way to obtain a tenant-scoped session. It sets
`bookwarden.tenant_id` with set_config(..., is_local => true), which is `SET LOCAL`: the
setting dies with the transaction, so a pooled connection never carries one tenant's
context into the next request. Row-level security on every tenant table reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg import pq
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session

from bookwarden.core.config import Settings
from bookwarden.crypto.keyring import Keyring
from bookwarden.crypto.master import MasterKeys, load_master_keys
from bookwarden.db import provision as prov
from bookwarden.db.server import admin_url

TENANT_SETTING = "bookwarden.tenant_id"
# The chain id of work done outside any institution (platform_session): the nil UUID, which no
# tenant id can be. The audit trail's platform chain is this id.
PLATFORM = UUID(int=0)

# Called as the last step of every transaction that is about to commit: `finish(session, chain,
# commit=...)`, with `chain` the tenant id (or PLATFORM). A finisher may send the COMMIT itself
# (the audit trail sends its append and the COMMIT in one round trip); SQLAlchemy's own commit then
# finds the transaction closed. The audit area registers its append here (audit/record.py), so this
# module, below the audit trail, never imports it (a lower layer offers a hook; the higher one fills it).
Finisher = Callable[..., None]
_finishers: list[Finisher] = []


def on_commit(finisher: Finisher) -> Finisher:
    """Register `finisher` to run last in every committing transaction (once, whatever the imports)."""
    if finisher not in _finishers:
        _finishers.append(finisher)
    return finisher


def _finish(session: Session, chain: UUID, *, commit: bool) -> None:
    for finisher in _finishers:
        finisher(session, chain, commit=commit)


class TenantSession(Session):
    """A session whose transaction carries one tenant's context. Services receive it."""

    tenant_id: UUID
    keyring: Keyring


@dataclass
class Database:
    engine: Engine
    keyring: Keyring
    urls: prov.DatabaseUrls
    master: MasterKeys
    # Tests bind sessions to one connection whose outer transaction is rolled back at the end;
    # sessions then run in savepoints. The service code is the same either way.
    bind: Engine | Connection | None = None
    join_transaction_mode: str = "conditional_savepoint"

    def _session(self, cls: type[Session] = Session) -> Session:
        return cls(
            bind=self.bind or self.engine,
            expire_on_commit=False,
            join_transaction_mode=self.join_transaction_mode,
        )

    @classmethod
    def open(
        cls,
        urls: prov.DatabaseUrls,
        master: MasterKeys,
        pool_size: int = 10,
        cache_size: int = 200_000,
        transaction_pooler: bool = False,
        pool_overflow: int | None = None,
    ):
        """Two engines, data and keyring, each keeping up to `pool_size` connections open and opening up to
        `pool_overflow` (default: as many) more at busy moments: at most 2 x (pool_size + pool_overflow)
        connections for the process (README "Connection budget"). Connections open as they are first needed."""
        overflow = pool_size if pool_overflow is None else pool_overflow
        # Behind a pooler in transaction mode, consecutive transactions of one client connection run on
        # different server connections, so a statement psycopg prepared on one is unknown on the next
        # (PgBouncer before 1.21 cannot carry them over): prepared statements off.
        connect_args = {"prepare_threshold": None} if transaction_pooler else {}
        engine = create_engine(urls.app, pool_size=pool_size, max_overflow=overflow, connect_args=connect_args)
        keyring_engine = create_engine(
            urls.keyring_app, pool_size=pool_size, max_overflow=overflow, connect_args=connect_args
        )
        return cls(
            engine=engine,
            keyring=Keyring(keyring_engine, master, cache_size),
            urls=urls,
            master=master,
        )

    def dispose(self) -> None:
        self.engine.dispose()
        self.keyring.engine.dispose()


def connect(settings: Settings) -> Database:
    """Open the app-role connection pools for the configured server (embedded started if needed)."""
    master = load_master_keys(settings)
    urls = prov.database_urls(admin_url(settings), settings.database_name, master.current)
    if settings.database_pooler_url:
        urls = through_pooler(urls, make_url(settings.database_pooler_url))
    return Database.open(
        urls,
        master,
        settings.pool_size,
        settings.subject_key_cache_size,
        transaction_pooler=bool(settings.database_pooler_url),
        pool_overflow=settings.pool_overflow,
    )


def through_pooler(urls: prov.DatabaseUrls, pooler: URL) -> prov.DatabaseUrls:
    """The app role's two URLs pointed at the pooler's host and port; the owner's stay direct.

    Only the service's transactions go through the pooler: migrations, provisioning, backups and
    offboarding hold session state (session advisory locks, replica mode) and keep the direct server.
    """

    def moved(url: URL) -> URL:
        # A socket folder given as ?host= (the embedded server's URLs) would win over the host: dropped.
        return url.difference_update_query(["host", "port"]).set(host=pooler.host, port=pooler.port)

    return dataclasses.replace(urls, app=moved(urls.app), keyring_app=moved(urls.keyring_app))


@contextmanager
def tenant_session(db: Database, tenant_id: UUID) -> Iterator[TenantSession]:
    """One transaction in `tenant_id`'s context; commits on success, rolls back on error."""
    if not isinstance(tenant_id, UUID):
        # Only ids that came from our own tables reach here; a string would mean user input slipped through.
        raise TypeError("tenant_id must be a UUID")
    session = db._session(TenantSession)
    session.tenant_id = tenant_id
    session.keyring = db.keyring
    with _transaction(db, session, tenant_id, tenant_id):
        yield session


@contextmanager
def _transaction(db: Database, session: Session, chain: UUID, tenant: UUID | None) -> Iterator[None]:
    """The transaction of a session: begun (in `tenant`'s context, if any), finished, always closed.

    The finishers run last (the audit trail appends the transaction's events and sends the COMMIT with
    them). When one has committed, the session is only closed: its own commit would find the transaction
    gone, and SQLAlchemy's bookkeeping for it cost about a tenth of an audited read. Objects stay as they
    were (`expire_on_commit=False`), detached by the close as after a commit. When nothing was recorded,
    the session commits as usual; on any error it rolls back. A test's outer transaction (bind set) must
    not commit: there the append alone is sent and the session commits its savepoint.
    """
    with session:
        connection = session.connection()
        if tenant is not None:
            _set_tenant(connection, str(tenant))
        try:
            yield
            _finish(session, chain, commit=db.bind is None)
            if db.bind is not None and tenant is not None:
                # Savepoint mode (tests): SET LOCAL outlives a released savepoint, so clear it by hand to
                # give the next session in the same outer transaction the fresh context production has.
                session.flush()  # pending changes still belong to this tenant's context
                _set_tenant(connection, "")
            if db.bind is not None or _in_transaction(connection):
                session.commit()
        except BaseException:
            session.rollback()
            raise


def _in_transaction(connection: Connection) -> bool:
    return connection.connection.driver_connection.pgconn.transaction_status != pq.TransactionStatus.IDLE


def _set_tenant(connection: Connection, value: str) -> None:
    """Set the tenant context (SET LOCAL semantics: is_local => true), and begin the transaction with it.

    On a fresh connection the BEGIN and the set_config go together in one round trip (the driver would
    otherwise send its BEGIN alone first): two of a read's four round trips become one. That needs the
    simple protocol, which takes no bound parameters, so the id is written into the SQL; it is safe
    because only a UUID's own canonical text (hex digits and hyphens), or the empty string, is accepted.
    """
    if value and str(UUID(value)) != value:
        raise ValueError("the tenant context is a UUID in canonical form")
    statement = f"SELECT set_config('{TENANT_SETTING}', '{value}', true)".encode()
    if not _in_transaction(connection):
        statement = b"BEGIN; " + statement
    run_simple(connection, statement)


def run_simple(connection: Connection, statement: bytes) -> None:
    """Run `statement`, one or more SQL statements without parameters, in one round trip (libpq's PQexec).

    For the two statements every transaction sends (the tenant context with the BEGIN, the audit append
    with the COMMIT), whose cost is mostly round trips: the driver would send a BEGIN of its own first, or
    need its pipeline mode, which costs more client time than the round trip it saves. The driver reads
    the transaction's state from the connection itself, so it sees the BEGIN or COMMIT sent here. The
    statements run in order and stop at the first error, which is raised as the driver would raise it.
    """
    pgconn = connection.connection.driver_connection.pgconn
    try:
        result = pgconn.exec_(statement)
        if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            return
        if pgconn.status == pq.ConnStatus.BAD or result.error_field(pq.DiagnosticField.SQLSTATE) is None:
            # The connection failed, not a statement (libpq's own error, no SQLSTATE): the driver's class for it,
            # which the API answers with 503.
            raise psycopg.OperationalError(result.error_message.decode(errors="replace").strip())
        raise psycopg.errors.error_from_result(result, encoding=pgconn.parameter_status(b"client_encoding").decode())
    except psycopg.Error as exc:
        if pgconn.status == pq.ConnStatus.BAD:
            # As SQLAlchemy does on a disconnect: this connection is never handed out again, and the pool's
            # idle ones, opened to the same server, are dropped too (a restarted server closed them all).
            connection.invalidate(exc)
            connection.engine.dispose(close=False)
        raise


@contextmanager
def platform_session(db: Database) -> Iterator[Session]:
    """A transaction with no tenant context: platform tables only; every tenant table reads empty."""
    session = db._session()
    with _transaction(db, session, PLATFORM, None):
        yield session
