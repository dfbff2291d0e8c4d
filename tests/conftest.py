"""Tests run against a real PostgreSQL: embedded by default, BOOKWARDEN_TEST_DATABASE_URL to point elsewhere.

One server and one freshly migrated database per test process (each pytest-xdist worker has its own);
each test runs inside a transaction that is rolled back at the end (services run in savepoints inside it).
Tests that need real commits (concurrency, pooled connections, crash recovery) use
`committed_db` and clean up after themselves by truncating as the owner.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from bookwarden import areas
from bookwarden.crypto.aead import new_key
from bookwarden.crypto.master import MasterKeys, key_id
from bookwarden.db import provision
from bookwarden.db.migrate import migrate
from bookwarden.db.server import embedded_admin_url, stop_embedded
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.tenancy import service as tenancy

TEST_DATABASE = f"bookwarden_test_{os.getpid()}"

# As every entry point does: every area's tables, approval kinds and jobs registered before any test runs.
areas.load()


@pytest.fixture(scope="session")
def admin_url():
    configured = os.environ.get("BOOKWARDEN_TEST_DATABASE_URL")
    if configured:
        # Every worker provisions the same two roles with the password of its own master key.
        if os.environ.get("PYTEST_XDIST_WORKER"):
            pytest.fail("BOOKWARDEN_TEST_DATABASE_URL takes one test process: run pytest with -n 0")
        yield make_url(configured).set(drivername="postgresql+psycopg")
        return
    pgdata = Path(tempfile.mkdtemp(prefix="bookwarden-test-")) / "pg"
    admin = embedded_admin_url(pgdata)
    with psycopg.connect(provision.libpq(admin), autocommit=True) as conn:
        # A throwaway server: nothing on it has to outlive a crash of the machine, so nothing is flushed to
        # disk (a killed server process still loses nothing: the kernel holds what it wrote). CREATE DATABASE,
        # which flushes every file it writes, takes a fraction of a second, not ten.
        for setting in ("fsync", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")
    yield admin
    stop_embedded(pgdata)


@pytest.fixture(scope="session")
def master_keys() -> MasterKeys:
    key = new_key()
    return MasterKeys(current_id=key_id(key), keys={key_id(key): key})


@pytest.fixture(scope="session")
def database_urls(admin_url, master_keys) -> provision.DatabaseUrls:
    provision.drop(admin_url, TEST_DATABASE)
    urls = provision.provision(admin_url, TEST_DATABASE, master_keys.current)
    migrate(urls)
    yield urls
    provision.drop(admin_url, TEST_DATABASE)


@pytest.fixture(scope="session")
def committed_database(database_urls, master_keys) -> Database:
    database = Database.open(database_urls, master_keys, pool_size=5)
    yield database
    database.dispose()


@pytest.fixture
def db(committed_database) -> Database:
    """The database as services see it, inside a transaction rolled back after the test."""
    connection = committed_database.engine.connect()
    outer = connection.begin()
    yield dataclasses.replace(committed_database, bind=connection, join_transaction_mode="create_savepoint")
    outer.rollback()
    connection.close()


@pytest.fixture
def committed_db(committed_database, admin_url) -> Database:
    """Real commits; every data table is emptied afterwards.

    As a superuser in replica mode: the audit tables refuse TRUNCATE to every role through their
    triggers, and replica mode is the one (superuser-only) way past them, as a restore would be.
    """
    yield committed_database
    with psycopg.connect(provision.libpq(admin_url.set(database=TEST_DATABASE)), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        conn.execute("TRUNCATE " + ", ".join(tables) + " CASCADE")


@pytest.fixture
def committed_tenant(committed_db, home):
    """`committed_tenant()` -> the id of a new tenant whose rows are really committed."""

    def make():
        slug = f"c-{uuid.uuid4().hex[:12]}"
        with platform_session(committed_db) as session:
            return tenancy.create_tenant(session, committed_db.keyring, home, slug, f"Committed {slug}").id

    return make


@pytest.fixture
def superuser_conn(admin_url):
    """A superuser connection in replica mode (triggers off): the tamperer who owns the machine."""
    with psycopg.connect(provision.libpq(admin_url.set(database=TEST_DATABASE)), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


@pytest.fixture
def owner_conn(database_urls):
    """A psycopg connection as the schema owner, for catalog checks and tampering."""
    with psycopg.connect(provision.libpq(database_urls.owner), autocommit=True) as conn:
        yield conn


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def make_tenant(db, home):
    counter = iter(range(1, 10_000))

    def make(slug: str | None = None, name: str | None = None):
        n = next(counter)
        with platform_session(db) as session:
            return tenancy.create_tenant(session, db.keyring, home, slug or f"inst-{n}", name or f"Institution {n}")

    return make


@pytest.fixture
def tenant(make_tenant):
    return make_tenant("alpha", "Alpha University")


@pytest.fixture
def other_tenant(make_tenant):
    return make_tenant("beta", "Beta Public Library")


@pytest.fixture
def in_tenant(db):
    """`with in_tenant(t) as session:` a tenant-scoped session for tenant `t`."""

    def scoped(t):
        return tenant_session(db, t.id)

    return scoped


@pytest.fixture
def settings(home):
    from bookwarden.core.config import Settings

    return Settings(home=home)


@pytest.fixture
def app(db, settings):
    from bookwarden.api.app import create_app

    return create_app(db, settings)


@pytest.fixture
def issue_token(db):
    """issue_token(tenant, permissions=...) -> bearer token of that tenant."""
    from datetime import timedelta

    from bookwarden.core.permissions import LIBRARY_READ, LIBRARY_WRITE
    from bookwarden.identity.tokens import service as tokens

    def issue(t, permissions=LIBRARY_READ | LIBRARY_WRITE, ttl=timedelta(hours=1)):
        with tenant_session(db, t.id) as session:
            return tokens.issue_api_token(session, "test", sorted(permissions), ttl)[1]

    return issue


@pytest.fixture
def operator_token(db):
    from datetime import timedelta

    from bookwarden.identity.tokens import service as tokens

    # Every platform permission a token can hold: break-glass is held only by an operator signed in.
    permissions = sorted(tokens.OPERATOR_TOKEN_PERMISSIONS)
    with platform_session(db) as session:
        return tokens.issue_operator_token(session, "ops", permissions, timedelta(hours=1))[1]


@pytest.fixture
def client_for(app, issue_token):
    """client_for(tenant) -> an HTTP client authenticated with a fresh token of that tenant."""
    from fastapi.testclient import TestClient

    def make(t, **kw):
        client = TestClient(app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {issue_token(t, **kw)}"
        return client

    return make


@pytest.fixture
def browser(app):
    """browser(address=...) -> an HTTPS client whose cookie jar keeps the session, like a browser's.

    It sends X-Requested-With, as the web console's scripts do; the CSRF tests take it away.
    """
    from fastapi.testclient import TestClient

    from tests.helpers import fresh_address

    def make(address: str | None = None) -> TestClient:
        client = TestClient(
            app,
            base_url="https://testserver",
            client=(address or fresh_address(), 50000),
            raise_server_exceptions=False,
        )
        client.headers["X-Requested-With"] = "fetch"
        return client

    return make
