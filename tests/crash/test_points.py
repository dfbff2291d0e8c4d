"""The registry of crash points (bookwarden/core/faults.py) is the code's: each registered point is called in
the production code exactly once, every point called there is registered, and the suite kills at each one."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import bookwarden
from bookwarden.core import faults
from tests.crash import (
    test_backup_and_audit,
    test_erasure,
    test_jobs_and_mail,
    test_keys,
    test_offboarding,
    test_processes,
)

SOURCE = Path(bookwarden.__file__).parent
CALL = re.compile(r"""faults\.point\(\s*["']([^"']+)["']\s*\)""")
SUITE = (test_erasure, test_keys, test_jobs_and_mail, test_backup_and_audit, test_offboarding, test_processes)


def _calls() -> list[str]:
    return [name for path in sorted(SOURCE.rglob("*.py")) for name in CALL.findall(path.read_text())]


def test_every_point_in_the_code_is_registered_once_and_every_registered_one_is_in_the_code():
    calls = _calls()
    assert sorted(set(calls)) == sorted(calls), "a crash point is called in two places: name each place"
    assert set(calls) == set(faults.POINTS)
    assert len(faults.POINTS) >= 50


def test_the_suite_kills_at_every_registered_point():
    killed = {point for module in SUITE for point in module.POINTS}  # each module's parametrised points
    assert killed == set(faults.POINTS)


def test_an_unarmed_point_does_nothing_and_an_unknown_name_is_refused():
    faults.point("jobs.claimed")  # nothing armed: still here
    with pytest.raises(ValueError, match="no crash point"):
        faults.arm("jobs.clamied")
    # A process started with a misspelt point refuses to start rather than never crashing where it was told.
    started = subprocess.run(
        [sys.executable, "-c", "import bookwarden.core.faults"],
        env=os.environ | {faults.ENV: "jobs.clamied"},
        capture_output=True,
    )
    assert started.returncode == 1 and b"names no crash point" in started.stderr
    armed = subprocess.run(
        [sys.executable, "-c", "from bookwarden.core import faults; faults.point('jobs.claimed'); print('alive')"],
        env=os.environ | {faults.ENV: "jobs.claimed"},
        capture_output=True,
    )
    assert armed.returncode == -signal.SIGKILL and b"alive" not in armed.stdout
