"""`bookwarden monitor run` as operators start it: a process that follows its files, stores alerts, and on SIGTERM
saves its positions and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sqlalchemy import select

from bookwarden.db.session import platform_session
from bookwarden.monitor.alerts.models import StoredAlert
from bookwarden.monitor.collect.models import Position
from tests.e2e.test_cli import cli_env  # noqa: F401 - the CLI pointed at the test database
from tests.monitor.test_collect import _sshd_failures


def test_monitor_run_stores_alerts_and_saves_its_positions_on_sigterm(cli_env, committed_db, tmp_path):  # noqa: F811
    log = tmp_path / "auth.log"
    _sshd_failures(log, 8, address="203.0.113.77")
    env = {
        **os.environ,
        **cli_env,
        "BOOKWARDEN_MONITOR_FILES": f"syslog:{log}",
        "BOOKWARDEN_MONITOR_POLL_SECONDS": "0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from bookwarden.cli import main; main()", "monitor", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        found = []
        while not found and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            with platform_session(committed_db) as session:
                found = list(session.scalars(select(StoredAlert).where(StoredAlert.rule == "sshd_brute_force")))
        assert found, process.stderr.read() if process.poll() is not None else "no alert within 90 s"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    assert "positions saved" in stderr
    assert found[0].source_address == "203.0.113.77"
    with platform_session(committed_db) as session:
        assert session.get(Position, f"file:{log}").offset == log.stat().st_size
