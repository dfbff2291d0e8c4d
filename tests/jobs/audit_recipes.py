"""Audit-coverage recipes of the jobs area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.invariants.audit_coverage import (
    Command,
    command,
)


@command("worker")
def _(c):
    from bookwarden.jobs import worker

    c.monkeypatch.setattr(worker.Worker, "run_forever", lambda self, stop: None)
    c.monkeypatch.setattr(worker, "stop_on_signals", lambda stop: None)  # the test runner keeps its signals
    return Command(["worker", "--name", "coverage"], Action.SERVICE_STARTED, PLATFORM_CHAIN)
