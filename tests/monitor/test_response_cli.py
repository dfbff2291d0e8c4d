"""`bookwarden monitor blocks | block | unblock` at the console: what an operator sees, what is refused."""

from __future__ import annotations

import json
import os
import subprocess

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bookwarden.api.app import create_app
from tests.e2e.test_cli import BOOKWARDEN, cli_env, map_console  # noqa: F401 - fixture


def run(*args: str) -> str:
    from bookwarden.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(env: dict, *args: str) -> str:
    """The command as a shell runs it: exit code 2 and the reason on stderr, no traceback."""
    result = subprocess.run([*BOOKWARDEN, *args], capture_output=True, text=True, env=os.environ | env)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_an_operator_blocks_lists_and_unblocks_at_the_console(cli_env, committed_db, settings):  # noqa: F811
    assert "blocked 203.0.113.50/32" in run("monitor", "block", "203.0.113.50", "--minutes", "20", "--reason", "scan")
    run("monitor", "block", "2001:db8:9::/48")
    listed = [json.loads(line) for line in run("monitor", "blocks", "--format", "json").splitlines()]
    assert [b["network"] for b in listed] == ["203.0.113.50/32", "2001:db8:9::/48"]  # soonest to end first
    assert listed[0]["reason"] == "scan" and listed[0]["created_by"] == "console" and listed[0]["offence"] == 1
    assert set(listed[0]) >= {"id", "network", "rule", "jail", "offence", "created_at", "expires_at"}
    assert "id" in run("monitor", "blocks")  # the table (its cells are as wide as the terminal)

    app = create_app(committed_db, settings.model_copy(update={"monitor_block_refresh_seconds": 0.0}))
    blocked = TestClient(app, raise_server_exceptions=False, client=("2001:db8:9:1::5", 40000))
    assert blocked.get("/healthz").status_code == 403

    assert "unblocked 2001:db8:9::/48" in run("monitor", "unblock", "2001:db8:9:1::5")
    assert blocked.get("/healthz").status_code == 200
    assert [json.loads(line)["network"] for line in run("monitor", "blocks", "--format", "json").splitlines()] == [
        "203.0.113.50/32"
    ]


def test_the_console_refuses_bad_addresses_and_operators_without_the_permission(
    cli_env,  # noqa: F811 - fixture
    committed_db,
    monkeypatch,
):
    assert "is not an IP address" in refused(cli_env, "monitor", "block", "203.0.113.500")
    assert "host bits set" in refused(cli_env, "monitor", "block", "203.0.113.5/24")
    assert "never blocked" in refused(cli_env, "monitor", "block", "127.0.0.1")
    assert "no active block covers 198.51.100.1/32" in refused(cli_env, "monitor", "unblock", "198.51.100.1")
    assert "none of table, json" in refused(cli_env, "monitor", "blocks", "--format", "xml")
    assert run("monitor", "blocks", "--format", "json") == ""  # nothing was stored

    map_console(monkeypatch, committed_db, "operator_support")
    env = cli_env | {"BOOKWARDEN_CONSOLE_OPERATORS": os.environ["BOOKWARDEN_CONSOLE_OPERATORS"]}
    assert "platform.blocks.manage" in refused(env, "monitor", "block", "203.0.113.9")
    assert "platform.blocks.read" in refused(env, "monitor", "blocks")
