"""`bookwarden serve` as a real uvicorn server on 127.0.0.1: it names no server software, and it believes
X-Forwarded-For only from the proxies named in BOOKWARDEN_TRUSTED_PROXIES (none by default), so a
local client cannot choose the source address that keys the throttles and is written to the trail."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from pydantic import ValidationError
from sqlalchemy import text
from typer.testing import CliRunner

from bookwarden.api.app import create_app
from bookwarden.api.cli import server_options
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.permissions import LIBRARY_READ
from bookwarden.db import provision
from bookwarden.db.session import tenant_session
from bookwarden.identity.tokens import service as tokens
from tests.e2e.test_cli import BOOKWARDEN, cli_env  # noqa: F401 - fixture
from tests.helpers import security_header_faults, served

FORGED = "203.0.113.77"


@pytest.fixture
def reader(committed_db, committed_tenant):
    """A committed tenant and a token of it: the served app works on its own connections."""
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        token = tokens.issue_api_token(session, "probe", sorted(LIBRARY_READ), timedelta(hours=1))[1]
    return tenant_id, token


def _recorded_address(committed_db, tenant_id, response: httpx.Response) -> str:
    with tenant_session(committed_db, tenant_id) as session:
        return session.execute(
            # Kept apart from the hashed event (audit_event_contexts), joined by the event's number.
            text(
                "SELECT c.source_address FROM audit_events e JOIN audit_event_contexts c"
                " ON c.tenant_id = e.tenant_id AND c.seq = e.seq WHERE e.request_id = :r"
            ),
            {"r": response.headers["x-request-id"]},
        ).scalar_one()


@pytest.mark.parametrize(
    ("trusted", "recorded"),
    [
        ("", "127.0.0.1"),  # the default: no proxy is believed, not even one on this machine
        ("10.20.30.40", "127.0.0.1"),  # a proxy is named, but the caller is not it
        ("127.0.0.1", FORGED),  # the caller is the named proxy: the address it forwards is the client's
    ],
)
def test_x_forwarded_for_is_believed_only_from_a_named_proxy(committed_db, home, reader, trusted, recorded):
    tenant_id, token = reader
    settings = Settings(home=home, trusted_proxies=trusted)
    with served(create_app(committed_db, settings), settings) as url:
        response = httpx.get(
            f"{url}/api/v1/patrons",
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": FORGED},
        )
    assert response.status_code == 200
    assert _recorded_address(committed_db, tenant_id, response) == recorded


def test_the_server_names_no_software_and_sends_the_security_headers(committed_db, home):
    settings = Settings(home=home, public_url="https://library.example")
    with served(create_app(committed_db, settings), settings) as url:
        answers = [httpx.get(f"{url}/healthz"), httpx.get(f"{url}/nothing-here")]
    for answer in answers:
        assert "server" not in answer.headers, answer.headers
        assert answer.headers["date"]  # HTTP requires a Date from a server with a clock: kept
        assert security_header_faults(answer, https=True) == []


def test_serve_gives_uvicorn_these_options(cli_env, monkeypatch):  # noqa: F811 - the fixture imported above
    given = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: given.update(options))
    monkeypatch.setenv("BOOKWARDEN_TRUSTED_PROXIES", "10.0.0.7, 10.1.0.0/16")
    get_settings.cache_clear()
    from bookwarden.cli import app

    result = CliRunner().invoke(app, ["serve", "--port", "8999"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert given["server_header"] is False and given["port"] == 8999
    assert given["proxy_headers"] is True and given["forwarded_allow_ips"] == ["10.0.0.7", "10.1.0.0/16"]

    monkeypatch.delenv("BOOKWARDEN_TRUSTED_PROXIES")
    get_settings.cache_clear()
    assert server_options(get_settings())["proxy_headers"] is False


@pytest.mark.parametrize("value", ["*", "10.0.0.300", "proxy.internal", "10.0.0.0/33"])
def test_a_trusted_proxy_must_be_an_address_or_a_network(value):
    with pytest.raises(ValidationError, match="BOOKWARDEN_TRUSTED_PROXIES"):
        Settings(trusted_proxies=value)


def _spawned_workers(pid: int) -> list[int]:
    """The worker processes uvicorn's supervisor `pid` spawned (multiprocessing's spawn children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    spawned = []
    for child in children:
        with contextlib.suppress(FileNotFoundError):  # a child may end between the two reads
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                spawned.append(int(child))
    return spawned


def _serve(cli_environment: dict[str, str], workers: int, **env: str) -> tuple[subprocess.Popen, str]:
    """`bookwarden serve --workers N` as a real process, once it answers and runs all N workers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [*BOOKWARDEN, "serve", "--workers", str(workers), "--port", str(port)],
        env=os.environ | cli_environment | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # each worker imports the whole app: slow on a loaded machine
    try:
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
            try:
                ready = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
                if ready and len(_spawned_workers(server.pid)) == workers:
                    return server, url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    except BaseException:
        server.kill()
        server.wait()
        raise


def test_serve_runs_several_processes_and_lets_in_flight_requests_finish(cli_env, reader, database_urls):  # noqa: F811
    _, token = reader
    server, url = _serve(cli_env, workers=2)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        workers = _spawned_workers(server.pid)
        assert all(httpx.get(f"{url}/api/v1/patrons", headers=headers).status_code == 200 for _ in range(20))

        # A request held in flight by a lock on the table it reads, while the server is told to stop.
        with psycopg.connect(provision.libpq(database_urls.owner)) as holder:
            holder.execute("LOCK TABLE patrons IN ACCESS EXCLUSIVE MODE")
            answers: list[int] = []
            request = threading.Thread(
                target=lambda: answers.append(
                    httpx.get(f"{url}/api/v1/patrons", headers=headers, timeout=60).status_code
                )
            )
            request.start()
            time.sleep(1.0)  # the request is inside the server, waiting on the lock
            server.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert server.poll() is None, "the server must wait for its in-flight request"
            with pytest.raises(httpx.TransportError):  # ... but takes no new ones
                httpx.get(f"{url}/healthz", timeout=2)
            holder.rollback()  # the lock goes; the request completes
        request.join(timeout=30)
        assert answers == [200]
        assert server.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _counted(exposition: str, route: str) -> float:
    """The sum of bookwarden_http_requests_total over every sample of `route`."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("bookwarden_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_the_requests_of_every_worker(cli_env):  # noqa: F811
    token = "m" * 40
    server, url = _serve(cli_env, workers=2, BOOKWARDEN_METRICS_TOKEN=token)
    try:
        workers = _spawned_workers(server.pid)
        # The folder `serve` made for the workers' values: private, and the same for both.
        folders = {
            entry.split(b"=", 1)[1].decode()
            for pid in workers
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR=")
        }
        assert len(folders) == 1
        folder = Path(folders.pop())
        assert folder.is_dir() and folder.stat().st_mode & 0o077 == 0

        # Requests on fresh connections until both workers have answered some (the kernel picks the worker).
        sent = 0
        while not all((folder / f"counter_{pid}.db").exists() for pid in workers) or sent < 20:
            assert sent < 2000, f"one worker answered everything: {sorted(p.name for p in folder.iterdir())}"
            with httpx.Client() as fresh:
                assert fresh.get(f"{url}/nothing-here").status_code == 404
            sent += 1

        # Whichever worker answers the scrape counts every request, its own and the other's.
        for _ in range(6):
            with httpx.Client() as fresh:
                scraped = fresh.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
            assert scraped.status_code == 200
            assert _counted(scraped.text, "unmatched") == sent, scraped.text

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert not folder.exists(), "serve removes the folder when it stops"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
