"""Through a real PgBouncer in transaction mode: tenant isolation, the audit chain and HTTP under load.

PgBouncer (Debian's `pgbouncer`) runs with its own ini and auth file, in front of the test server,
with 2 server connections per database and role: many client connections take turns on them, so
consecutive transactions of one client land on different server connections and one server
connection serves both tenants. The app's Database is opened as `connect()` opens it when
BOOKWARDEN_DATABASE_POOLER_URL is set (`through_pooler`, prepared statements off).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bookwarden.audit import record as audit
from bookwarden.audit import signing, verify
from bookwarden.audit.events import Action
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db import provision
from bookwarden.db.session import Database, platform_session, tenant_session, through_pooler
from bookwarden.library import records
from bookwarden.library.schemas import PatronCreate

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVER_CONNECTIONS = 2  # default_pool_size: per database and role

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pgbouncer(database_urls):
    """The address of a PgBouncer in transaction mode in front of the test server."""
    # Not under pytest's tmp folder: that one is private to root, and PgBouncer runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="bookwarden-pgbouncer-"))
    server = database_urls.app
    host = server.query.get("host") or server.host or "127.0.0.1"  # the embedded server's socket folder
    server_port = server.query.get("port") or server.port or 5432
    port = _free_port()
    users = "\n".join(
        f'"{role}" "{url.password}"'
        for role, url in ((provision.APP_ROLE, database_urls.app), (provision.OWNER_ROLE, database_urls.owner))
    )
    (folder / "userlist.txt").write_text(users + "\n")
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {folder / "userlist.txt"}
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
"""
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: as the user who owns the server's socket folder, who can reach it.
        user = Path(host).owner() if host.startswith("/") else "postgres"
        folder.chmod(0o755)
        for f in folder.iterdir():
            f.chmod(0o600)
            shutil.chown(f, user)
        shutil.chown(folder, user)
        command[1:1] = ["-u", user]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = make_url(f"postgresql+psycopg://127.0.0.1:{port}")
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(provision.libpq(through_pooler(database_urls, url).app), connect_timeout=2):
                break
        except psycopg.OperationalError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log = (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
                pytest.fail(f"pgbouncer did not start: {exc} {log[-2000:]}")
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pooled(pgbouncer, database_urls, master_keys, committed_db):
    """The app's Database through PgBouncer: 8 client connections a side, 2 server connections behind them."""
    database = Database.open(
        through_pooler(database_urls, pgbouncer), master_keys, pool_size=8, transaction_pooler=True
    )
    yield database
    database.dispose()


def test_the_pooled_database_really_goes_through_pgbouncer(pooled, pgbouncer):
    assert pooled.engine.url.port == pgbouncer.port
    assert pooled.keyring.engine.url.port == pgbouncer.port
    # Six client connections open at once, each asking for its server process: at most 2 distinct ones.
    connections = [pooled.engine.connect() for _ in range(6)]
    pids = set()
    try:
        for _round in range(3):
            for c in connections:
                pids.add(c.execute(text("SELECT pg_backend_pid()")).scalar_one())
                c.commit()  # the transaction ends, and with it this client's hold on a server connection
    finally:
        for c in connections:
            c.close()
    assert 1 <= len(pids) <= SERVER_CONNECTIONS


def test_alternating_tenants_over_two_server_connections_see_only_their_own_rows(pooled, home):
    from bookwarden.tenancy import service as tenancy

    with platform_session(pooled) as session:
        tenants = [
            tenancy.create_tenant(session, pooled.keyring, home, f"pb-{n}-{uuid.uuid4().hex[:6]}", f"T{n}").id
            for n in (1, 2)
        ]
    created = {t: [] for t in tenants}
    for n, tenant_id in enumerate(tenants):
        for k in range(3):
            with tenant_session(pooled, tenant_id) as session:
                patron = records.create(session, records.PATRONS, PatronCreate(name=f"Patron {n}-{k}"))
                created[tenant_id].append((patron.id, patron.name))

    seen_by_pid: dict[int, set] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(30):
            mine = tenants[(worker + i) % 2]
            with tenant_session(pooled, mine) as session:
                pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                owners = set(session.execute(text("SELECT DISTINCT tenant_id FROM patrons")).scalars())
                patron_id, name = created[mine][i % 3]
                read = records.read(session, records.PATRONS, patron_id).name  # decrypted through the keyring
            if owners != {mine}:
                failures.append(f"{mine} saw rows of {owners}")
            if read != name:
                failures.append(f"{mine} read {read!r} for {name!r}")
            with platform_session(pooled) as session:
                setting = session.execute(text("SELECT current_setting('bookwarden.tenant_id', true)")).scalar_one()
                none = session.execute(text("SELECT count(*) FROM patrons")).scalar_one()
            if setting not in (None, "") or none != 0:
                failures.append(f"no tenant set, yet setting {setting!r} and {none} patrons")
            with lock:
                seen_by_pid.setdefault(pid, set()).add(mine)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert failures == []
    # Really pooled: 8 clients took turns on at most 2 server connections, and each served both tenants.
    assert 1 <= len(seen_by_pid) <= SERVER_CONNECTIONS
    assert any(len(served) == 2 for served in seen_by_pid.values())


def test_a_session_level_setting_would_leak_through_the_pooler(pgbouncer, database_urls, committed_db):
    """The control the tests above rely on: what SET without LOCAL does behind PgBouncer, hence never used."""
    url = provision.libpq(through_pooler(database_urls, pgbouncer).app)
    leaked = str(uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as first:
        first.execute("SELECT set_config('bookwarden.leak_probe', %s, false)", (leaked,))
        clients = [psycopg.connect(url, autocommit=True) for _ in range(4)]
        try:
            seen = {c.execute("SELECT current_setting('bookwarden.leak_probe', true)").fetchone()[0] for c in clients}
        finally:
            for c in clients:
                c.close()
        first.execute("RESET bookwarden.leak_probe")
    assert leaked in seen  # another client got the server connection, and the setting with it


def test_concurrent_audit_appends_through_the_pooler_verify_clean(pooled, home):
    from bookwarden.tenancy import service as tenancy

    with platform_session(pooled) as session:
        tenant_id = tenancy.create_tenant(session, pooled.keyring, home, f"pba-{uuid.uuid4().hex[:6]}", "Audited").id
    writers, per_writer = 6, 25
    failures: list[Exception] = []

    def write() -> None:
        actor = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())
        try:
            for _ in range(per_writer):
                with tenant_session(pooled, tenant_id) as session:
                    audit.record(session, Action.SEARCH_CREATED, ("search", uuid.uuid4()), actor=actor)
                with platform_session(pooled) as session:
                    audit.record(session, Action.SEARCH_VIEWED, ("search", uuid.uuid4()), actor=actor)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    key = signing.SigningKey.from_seed(os.urandom(32))
    report = verify.verify_chain(pooled, tenant_id, signing.TrustedKeys(key.public))
    assert report.clean, report.summary()
    with tenant_session(pooled, tenant_id) as session:
        assert session.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == writers * per_writer


def test_http_load_through_the_pooler_has_no_error(pooled, settings, home):
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from bookwarden.api.app import create_app
    from bookwarden.core.permissions import LIBRARY_READ, LIBRARY_WRITE
    from bookwarden.identity.tokens import service as tokens
    from bookwarden.tenancy import service as tenancy

    app = create_app(pooled, settings)
    clients = []
    for n in range(2):
        with platform_session(pooled) as session:
            tenant_id = tenancy.create_tenant(session, pooled.keyring, home, f"pbl-{n}-{uuid.uuid4().hex[:6]}", "L").id
        with tenant_session(pooled, tenant_id) as session:
            token = tokens.issue_api_token(session, "load", sorted(LIBRARY_READ | LIBRARY_WRITE), timedelta(hours=1))[1]
        client = TestClient(app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {token}"
        patron = client.post("/api/v1/patrons", json={"name": f"Load {n}", "email": f"load{n}@example.org"}).json()
        clients.append((client, patron["id"]))
    statuses: list[int] = []

    def requests(i: int) -> list[int]:
        client, patron_id = clients[i % 2]
        other_id = clients[(i + 1) % 2][1]
        got = [
            client.get(f"/api/v1/patrons/{patron_id}").status_code,
            client.get("/api/v1/patrons").status_code,
            client.post("/api/v1/searches", json={"patron_id": patron_id, "query": f"q{i}"}).status_code,
            client.get(f"/api/v1/patrons/{other_id}").status_code,  # the other tenant's: not found
        ]
        return got

    with ThreadPoolExecutor(8) as pool:
        for got in pool.map(requests, range(80)):
            statuses.extend(got)
    assert len(statuses) == 320
    assert {s for s in statuses[0::4]} == {200}
    assert {s for s in statuses[1::4]} == {200}
    assert {s for s in statuses[2::4]} == {201}
    assert {s for s in statuses[3::4]} == {404}


def test_the_pooler_setting_routes_only_the_service_through_pgbouncer(pgbouncer, admin_url, master_keys):
    from bookwarden.core.config import Settings
    from bookwarden.crypto.master import encode_key
    from bookwarden.db.session import connect
    from tests.conftest import TEST_DATABASE

    settings = Settings(
        database_url=admin_url.render_as_string(hide_password=False),
        master_key=encode_key(master_keys.current),
        database_name=TEST_DATABASE,
        database_pooler_url=f"postgresql://127.0.0.1:{pgbouncer.port}",
    )
    database = connect(settings)
    try:
        for engine in (database.engine, database.keyring.engine):
            assert (engine.url.host, engine.url.port) == ("127.0.0.1", pgbouncer.port)
            with engine.connect() as conn:
                assert conn.connection.driver_connection.prepare_threshold is None
                assert conn.execute(text("SELECT current_user")).scalar_one() == provision.APP_ROLE
        # The owner's URLs (migrations, provisioning) stay on the server itself.
        assert database.urls.owner.port != pgbouncer.port
    finally:
        database.dispose()


@pytest.mark.parametrize("prepared_statements_off", [False, True])
def test_prepared_statements_must_be_off_behind_the_pooler(
    pgbouncer, database_urls, master_keys, committed_db, prepared_statements_off
):
    """Why the setting turns them off: psycopg prepares a statement after 5 runs on a client connection, and
    PgBouncer 1.18 then hands that client a server connection where the name is unknown or already taken."""
    database = Database.open(
        through_pooler(database_urls, pgbouncer), master_keys, pool_size=8, transaction_pooler=prepared_statements_off
    )
    errors: list[str] = []

    def work(_: int) -> None:
        for _ in range(30):
            try:
                with platform_session(database) as session:
                    session.execute(text("SELECT count(*) FROM tenants WHERE id <> :x"), {"x": uuid.uuid4()})
            except Exception as exc:  # counted: the point of the test
                errors.append(type(exc).__name__)

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
    finally:
        database.dispose()
    if prepared_statements_off:
        assert errors == []
    else:
        assert errors, "prepared statements survived transaction pooling: the setting would not be needed"
