"""Killing real processes at named crash points (bookwarden/core/faults.py), and what every kill must leave.

`die_at(point, work)` forks a child of the test process (the app already imported, so no start-up cost), arms
the point there and runs `work(db)` on connections of the child's own; the child must die of SIGKILL at that
point: no `finally`, no rollback sent, no flush, as a power cut would leave it. The parent then restarts the
work (the resume, the worker's next run) and checks what the brief of each area promises.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bookwarden.audit import checkpoints, signing, verify
from bookwarden.core import faults
from bookwarden.core.config import Settings
from bookwarden.db.session import Database

NOT_REACHED = 2
CHILD_TIMEOUT = 120  # seconds; the slowest step killed here is a restore on a loaded machine
FAILED = 1


def die_at(point: str, work: Callable[[Database], Any], db: Database) -> None:
    """Run `work` in a child process armed at `point`; it must die there of SIGKILL."""
    assert point in faults.POINTS, point
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = FAILED
        try:
            # Connections of its own: the parent's pooled ones stay referenced and untouched (a closed or
            # collected one would end the parent's server session too).
            own = Database.open(db.urls, db.master, pool_size=2)
            faults.arm(point)
            work(own)
            code = NOT_REACHED
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    status = ended[1]
    if ended[0] == 0:  # still running: a lock the parent holds, or a loop; never a test that hangs
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the child armed at {point} was still running after {CHILD_TIMEOUT} s")
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        reason = "finished without reaching it" if code == NOT_REACHED else "failed before it (traceback above)"
        raise AssertionError(f"the child armed at {point} {reason}")
    assert os.WTERMSIG(status) == signal.SIGKILL, f"the child armed at {point} died of signal {os.WTERMSIG(status)}"


def chains_verify(db: Database, settings: Settings) -> None:
    """Every audit chain verifies after the crash and the resume (what `bookwarden audit verify` checks)."""
    keys = signing.TrustedKeys(*signing.trusted_public_keys(settings))
    for chain in checkpoints.chain_ids(db):
        report = verify.verify_chain(db, chain, keys)
        assert report.clean, report.summary()
