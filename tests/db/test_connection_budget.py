"""The connection budget the README states ("Connection budget") is the one the processes configure: each
row's pool sizes are read from the engines `serve`'s workers, `worker` and `monitor run` actually build, so
the README cannot drift from the code, and the `serve` supervisor holds no connection while it serves."""

from __future__ import annotations

import re
from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from bookwarden import console
from bookwarden.core.config import get_settings
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| (`[^|]+`[^|]*) \| (\d+) \+ (\d+) \| (\d+) \+ (\d+) \| (\d+) \|")


def stated() -> dict[str, tuple[int, int, int, int, int]]:
    """The README's budget table: process -> (data pool, data overflow, keyring pool, keyring overflow, total)."""
    text = README.read_text()
    section = text[text.index("### Connection budget") :]
    section = section[: section.index("\n## ")]
    rows = {}
    for line in section.splitlines():
        found = ROW.match(line)
        if found:
            rows[found.group(1).strip()] = tuple(int(n) for n in found.groups()[1:])
    return rows


def configured(db) -> tuple[int, int, int, int, int]:
    data, keyring = db.engine.pool, db.keyring.engine.pool
    numbers = (data.size(), data._max_overflow, keyring.size(), keyring._max_overflow)
    return (*numbers, sum(numbers))


def test_the_readme_states_the_pools_each_process_opens(cli_env, monkeypatch):  # noqa: F811 - the fixture
    for name in ("BOOKWARDEN_POOL_SIZE", "BOOKWARDEN_POOL_OVERFLOW"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    rows = stated()
    assert set(rows) == {"`serve`: each worker process", "`serve`: the supervisor", "`worker`", "`monitor run`"}

    from bookwarden.api.app import from_environment

    serving = from_environment()  # what each `serve` worker process builds
    try:
        assert rows["`serve`: each worker process"] == configured(serving.state.db)
    finally:
        serving.state.db.dispose()
    commands = console.connect()  # what `worker` and `monitor run` use, like every command
    try:
        assert rows["`worker`"] == rows["`monitor run`"] == configured(commands)
    finally:
        commands.dispose()
    assert rows["`serve`: the supervisor"] == (0, 0, 0, 0, 0)


def test_the_serve_supervisor_holds_no_connection_while_its_workers_serve(cli_env, monkeypatch):  # noqa: F811
    held = {}

    def serving(_app, **_options):  # in place of uvicorn's loop: what does the supervisor hold meanwhile?
        db = console.connect()
        held["data"] = db.engine.pool.checkedin() + db.engine.pool.checkedout()
        held["keyring"] = db.keyring.engine.pool.checkedin() + db.keyring.engine.pool.checkedout()

    monkeypatch.setattr(uvicorn, "run", serving)
    from bookwarden.cli import app

    result = CliRunner().invoke(app, ["serve", "--workers", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert held == {"data": 0, "keyring": 0}
