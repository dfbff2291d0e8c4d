"""The operator's command line, run as an operator would: real processes, real databases."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope
from bookwarden.console import os_user
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.server import pg_bin
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.identity.operators.models import OperatorAccount
from bookwarden.identity.tokens import service as tokens
from bookwarden.tenancy.models import Tenant
from bookwarden.tenancy.service import get_tenant
from tests.conftest import TEST_DATABASE

BOOKWARDEN = [sys.executable, "-m", "bookwarden.cli"]
OPERATOR_PASSWORD = "granite orchard lantern 93 violet"


def enrolled_operator(db, username: str, role: str):
    """An active operator account, enrolled as its holder would: the link, a password, an app's code."""
    with platform_session(db) as session:
        link = operator_accounts.create_operator(session, db.keyring, db.master, username, role).link
    started = operator_accounts.start_enrolment(db, link.token)
    code = pyotp.TOTP(started.secret).now()
    return operator_accounts.complete_enrolment(db, link.token, OPERATOR_PASSWORD, code).account_id


def map_console(monkeypatch, db, role: str = "operator_ops"):
    """The OS user running the tests acts at the console as an operator of `role` (made on first use); its id.

    As a deployment maps it: BOOKWARDEN_CONSOLE_OPERATORS="<os user>=<operator account>"."""
    username = f"console.{role.replace('_', '-')}"
    with platform_session(db) as session:
        found = operator_accounts.console_account(session, username)
    account_id = found.id if found is not None else enrolled_operator(db, username, role)
    monkeypatch.setenv("BOOKWARDEN_CONSOLE_OPERATORS", f"{os_user()}={username}")
    get_settings.cache_clear()
    return account_id


def console_grant(db, tenant_id, scope: GrantScope = GrantScope.PRIVACY, *, operator_id=None) -> str:
    """An approved grant on `tenant_id` for the console's operator (or `operator_id`), asked by that operator
    signed in and approved by the institution's administrator, as over HTTP; its id, for --grant."""
    with platform_session(db) as session:
        if operator_id is None:
            account = operator_accounts.console_account(session, get_settings().console_operators.partition("=")[2])
        else:
            account = session.get(OperatorAccount, operator_id)
        operator = Principal(PrincipalKind.OPERATOR, account.id, None, operator_accounts.permissions_of(account))
    asked = grants.request_grant(
        db, operator, tenant_id, scope=scope, justification="ticket work at the console", ticket="OPS-1",
        duration=timedelta(hours=1),
    )  # fmt: skip
    admin = Principal(PrincipalKind.ACCOUNT, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with tenant_session(db, tenant_id) as session:
        grants.approve_grant(session, admin, asked.id)
    return str(asked.id)


def command_of(args) -> tuple[tuple[str, ...], object]:
    """The words naming the command `args` run, and its callback."""
    from bookwarden.cli import app

    path, group = [], app
    for word in args:
        inner = {g.name: g.typer_instance for g in group.registered_groups}
        if word in inner:
            path.append(word)
            group = inner[word]
            continue
        found = {c.name: c.callback for c in group.registered_commands}
        return (*path, word), found.get(word)
    return tuple(path), None


def granted(db, args) -> list[str]:
    """`args`, with `--grant` added when the command works on one institution's data and names none: the
    console's operator asks for a grant of the scope covering the command's permission, and the institution
    approves it, as an operator at work would. Tests of the refusal without a grant run their args as given
    (tests/invariants/test_console_door.py)."""
    args = list(args)
    if "--grant" in args or "--tenant" not in args:
        return args
    path, callback = command_of(args)
    permission = getattr(callback, "required_permission", None)
    tenant = args[args.index("--tenant") + 1]
    if path == ("audit", "export") and tenant != "platform":
        permission = Permission.AUDIT_VERIFY  # an institution's chain: its events are its data
    if permission is None or permission.is_platform:
        return args
    scope = next(scope for scope, held in grants.SCOPE_PERMISSIONS.items() if permission in held)
    return [*args, "--grant", console_grant(db, get_tenant_id(db, tenant), scope)]


def get_tenant_id(db, ref: str):
    with platform_session(db) as session:
        return get_tenant(session, ref).id


@pytest.fixture
def cli_env(committed_db, admin_url, tmp_path, monkeypatch):
    """The CLI pointed at the test server and database, with the test master key, run by an operator.

    The OS user is mapped to an active operator account of the ops role (`map_console`); a test that needs
    another role calls `map_console(monkeypatch, committed_db, role)`, and one that works on an institution's
    data names a grant (`console_grant`)."""
    env = {
        "BOOKWARDEN_DATABASE_URL": admin_url.render_as_string(hide_password=False),
        "BOOKWARDEN_DATABASE_NAME": TEST_DATABASE,
        "BOOKWARDEN_MASTER_KEY": base64.b64encode(committed_db.master.current).decode(),
        "BOOKWARDEN_HOME": str(tmp_path / "home"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    map_console(monkeypatch, committed_db)
    env["BOOKWARDEN_CONSOLE_OPERATORS"] = os.environ["BOOKWARDEN_CONSOLE_OPERATORS"]
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
    # The console mints no institution's token (their owners do, signed in): a machine's is made by a service here.
    tenant_id = get_tenant_id(committed_db, "north")
    with tenant_session(committed_db, tenant_id) as session:
        token = tokens.issue_api_token(session, "sync", sorted(LIBRARY_READ | LIBRARY_WRITE), timedelta(days=1))[1]

    client = TestClient(create_app(committed_db, settings), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {token}"
    assert client.post("/api/v1/patrons", json={"name": "Via CLI token"}).status_code == 201

    _run("tenant", "suspend", "north", "--reason", "contract ended")
    assert "suspended" in _run("tenant", "list")
    assert client.get("/api/v1/patrons").json()["type"] == "urn:bookwarden:problem:tenant-suspended"
    _run("tenant", "resume", "north")
    assert client.get("/api/v1/patrons").status_code == 200

    operator = _run("token", "create").strip()
    assert operator.startswith("bwo_")


def test_cli_errors_are_clear_and_change_nothing(cli_env):
    from bookwarden.cli import app

    runner = CliRunner()
    for args, words in [
        (["tenant", "create", "Bad Slug!", "X"], "slug"),
        (["tenant", "suspend", "nobody", "--reason", "x"], "no tenant"),
        (["token", "create", "--permission", "root"], "platform permissions:"),
        (["token", "create", "--tenant", "x", "--role", "tenant_admin"], "No such option"),
        (["token", "create", "--permission", "platform.operators.manage"], "you do not hold platform.operators.manage"),
    ]:
        result = subprocess.run([*BOOKWARDEN, *args], capture_output=True, text=True, env=os.environ | cli_env)
        assert result.returncode == 2, (args, result.stderr)
        assert words in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
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

    def refused(*args):
        result = subprocess.run([*BOOKWARDEN, *args], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 2, result.stdout
        return " ".join(result.stderr.split())

    try:
        bw("db", "migrate")  # needs no operator: it makes the platform exist
        assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
        # Nobody is an operator yet: everything else waits for one, and says how.
        assert "BOOKWARDEN_CONSOLE_OPERATORS" in refused("tenant", "create", "first", "First Library")
        assert "platform.operators.manage" in refused("operator", "create", "first.ops", "--role", "operator_ops")
        assert bw("operator", "create", "first.ciso", "--role", "ciso").strip().startswith("http")
        # The first operator exists: the second is created by it, signed in at the console, not by anyone.
        assert "mapped to no active operator" in refused("operator", "create", "second", "--role", "ciso")
        assert "mapped to no active operator" in refused("db", "url")
    finally:
        subprocess.run([*BOOKWARDEN, "db", "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def test_demo_seeds_once_and_issues_fresh_tokens(committed_db, settings):
    from bookwarden import demo
    from bookwarden.db.session import tenant_session
    from bookwarden.library import records

    first = demo.seed(committed_db, settings, patrons_each=3)
    second = demo.seed(committed_db, settings, patrons_each=3)
    assert set(first) == set(demo.INSTITUTIONS) and first != second
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy.service import get_tenant

    with platform_session(committed_db) as session:
        tenant = get_tenant(session, "riverside-public")
    with tenant_session(committed_db, tenant.id) as session:
        page = records.list_page(session, records.PATRONS, cursor=None, limit=50)
        assert len(page.items) == 3 and all(p.name and p.email for p in page.items)
        assert records.list_page(session, records.LOANS, cursor=None, limit=50).items

    from bookwarden.identity.signin import service as signin

    desk = second["riverside-public"]
    signed = signin.sign_in(
        committed_db,
        signin.SignInAttempt("riverside-public", desk.desk_username, desk.desk_password, "127.0.0.1", "test"),
    )
    assert not signed.second_factor_pending  # the printed desk login works as printed


def test_demo_refuses_a_database_holding_other_institutions(cli_env, committed_db, settings):
    """The demo needs no operator and prints credentials: it is for a local database of its own."""
    from bookwarden import demo
    from bookwarden.core.errors import Conflict

    _run("tenant", "create", "north", "North University")
    with pytest.raises(Conflict, match="north"):
        demo.seed(committed_db, settings, patrons_each=1)
    with platform_session(committed_db) as session:
        assert [t.slug for t in session.scalars(select(Tenant))] == ["north"]  # nothing seeded
