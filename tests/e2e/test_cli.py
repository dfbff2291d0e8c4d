"""The operator's command line, run as an operator would: real processes, real databases."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bookwarden.core.config import get_settings
from bookwarden.db.server import pg_bin
from tests.conftest import TEST_DATABASE

BOOKWARDEN = [sys.executable, "-m", "bookwarden.cli"]


@pytest.fixture
def cli_env(committed_db, admin_url, tmp_path, monkeypatch):
    """The CLI pointed at the test server and database, with the test master key."""
    env = {
        "BOOKWARDEN_DATABASE_URL": admin_url.render_as_string(hide_password=False),
        "BOOKWARDEN_DATABASE_NAME": TEST_DATABASE,
        "BOOKWARDEN_MASTER_KEY": base64.b64encode(committed_db.master.current).decode(),
        "BOOKWARDEN_HOME": str(tmp_path / "home"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def _run(*args: str) -> str:
    from bookwarden.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_tenant_lifecycle_and_tokens_from_the_command_line(cli_env, committed_db, settings):
    from bookwarden.api.app import create_app

    _run("db", "migrate")  # idempotent on an up-to-date database
    assert "north" in _run("tenant", "create", "north", "North University")
    home = Path(cli_env["BOOKWARDEN_HOME"])
    areas = list((home / "tenants").iterdir())
    assert len(areas) == 1 and stat.S_IMODE(areas[0].stat().st_mode) == 0o700
    token = _run("token", "create", "--tenant", "north", "--days", "1").strip()
    assert token.startswith("bwt_")

    client = TestClient(create_app(committed_db, settings), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {token}"
    assert client.post("/api/v1/patrons", json={"name": "Via CLI token"}).status_code == 201

    _run("tenant", "suspend", "north", "--reason", "contract ended")
    assert "suspended" in _run("tenant", "list")
    assert client.get("/api/v1/patrons").json()["type"] == "urn:bookwarden:problem:tenant-suspended"
    _run("tenant", "resume", "north")
    assert client.get("/api/v1/patrons").status_code == 200

    operator = _run("token", "create", "--operator").strip()
    assert operator.startswith("bwo_")


def test_cli_errors_are_clear_and_change_nothing(cli_env):
    from bookwarden.cli import app

    runner = CliRunner()
    for args, words in [
        (["tenant", "create", "Bad Slug!", "X"], "slug"),
        (["tenant", "suspend", "nobody", "--reason", "x"], "no tenant"),
        (["token", "create"], "--tenant or --operator"),
        (["token", "create", "--operator", "--permission", "root"], "permissions:"),
        (["token", "create", "--tenant", "x", "--role", "emperor"], "roles:"),
    ]:
        result = subprocess.run([*BOOKWARDEN, *args], capture_output=True, text=True, env=os.environ | cli_env)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr
    assert "Bad Slug" not in runner.invoke(app, ["tenant", "list"]).stdout


def test_keys_rotate_tenant_from_the_command_line(cli_env, committed_db):
    _run("tenant", "create", "rot", "Rotation")
    assert _run("keys", "rotate-tenant", "rot") == ""


def test_db_url_opens_a_psql_session_on_the_database(cli_env):
    url = _run("db", "url").strip()
    assert TEST_DATABASE in url
    out = subprocess.run(
        [pg_bin("psql"), url, "-tAc", "SELECT current_database(), current_user"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().startswith(f"{TEST_DATABASE}|")


def test_a_newcomer_starts_from_nothing_with_the_embedded_server(tmp_path):
    """No URL set: `db migrate` starts PostgreSQL under BOOKWARDEN_HOME, the rest just works."""
    home = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKWARDEN_")} | {"BOOKWARDEN_HOME": str(home)}

    def bw(*args):
        result = subprocess.run([*BOOKWARDEN, *args], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        bw("db", "migrate")
        assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
        bw("tenant", "create", "first", "First Library")
        assert "first" in bw("tenant", "list")
        assert bw("token", "create", "--tenant", "first").startswith("bwt_")
        url = bw("db", "url").strip()
        assert str(home / "pg") in url.replace("%2F", "/")
    finally:
        subprocess.run([*BOOKWARDEN, "db", "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def test_demo_seeds_once_and_issues_fresh_tokens(committed_db, settings):
    from bookwarden import demo
    from bookwarden.db.session import tenant_session
    from bookwarden.library import service

    first = demo.seed(committed_db, settings, patrons_each=3)
    second = demo.seed(committed_db, settings, patrons_each=3)
    assert set(first) == set(demo.INSTITUTIONS) and first != second
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy.service import get_tenant

    with platform_session(committed_db) as session:
        tenant = get_tenant(session, "riverside-public")
    with tenant_session(committed_db, tenant.id) as session:
        page = service.list_page(session, service.PATRONS, cursor=None, limit=50)
        assert len(page.items) == 3 and all(p.name and p.email for p in page.items)
        assert service.list_page(session, service.LOANS, cursor=None, limit=50).items

    from bookwarden.identity.signin import service as signin

    desk = second["riverside-public"]
    signed = signin.sign_in(
        committed_db,
        signin.SignInAttempt("riverside-public", desk.desk_username, desk.desk_password, "127.0.0.1", "test"),
    )
    assert not signed.second_factor_pending  # the printed desk login works as printed
