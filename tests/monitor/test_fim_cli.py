"""`bookwarden fim` at the console: one operator proposes, the same one cannot approve, another does; a scan
then reports a change and exits 1."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.core.config import get_settings
from bookwarden.core.errors import SegregationOfDutiesError
from bookwarden.db.session import platform_session
from bookwarden.monitor.fim.models import FimBaseline
from bookwarden.monitor.fim.service import NoBaseline
from tests.e2e.test_cli import cli_env, map_console  # noqa: F401 - cli_env is a fixture

runner = CliRunner()


def run(*args: str):
    get_settings.cache_clear()
    return runner.invoke(cli.app, list(args))  # a refusal is raised as `bookwarden` (cli.main) would report it


def test_propose_approve_by_another_and_scan(cli_env, committed_db, tmp_path, monkeypatch):  # noqa: F811
    tree = tmp_path / "watched"
    tree.mkdir()
    (tree / "app.py").write_text("print('hello')\n")
    monkeypatch.setenv("BOOKWARDEN_FIM_PATHS", str(tree))

    assert isinstance(run("fim", "scan").exception, NoBaseline)  # it says how to make one
    proposed = run("fim", "baseline")
    assert proposed.exit_code == 0, proposed.output
    with platform_session(committed_db) as session:
        baseline_id = session.scalars(select(FimBaseline.id)).one()
    assert f"bookwarden fim approve {baseline_id}" in proposed.output.replace("\n", "")

    refused = run("fim", "approve", str(baseline_id))  # the proposer
    assert isinstance(refused.exception, SegregationOfDutiesError)
    assert "another holder of platform.fim.manage" in str(refused.exception)
    map_console(monkeypatch, committed_db, "ciso")
    assert run("fim", "approve", str(baseline_id)).exit_code == 0

    assert run("fim", "scan").exit_code == 0
    (tree / "app.py").write_text("print('owned')\n")
    scanned = run("fim", "scan", "--format", "json")
    assert scanned.exit_code == 1
    lines = [json.loads(line) for line in scanned.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["action"] == "fim.changed" and lines[0]["path"] == str(tree / "app.py")
    assert lines[0]["changed"][0] == "hash"
    assert lines[-1]["summary"] and lines[-1]["findings"] == 1
