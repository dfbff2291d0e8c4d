"""Audit-coverage recipes of the monitor area's commands that use the database (file integrity, rootcheck): how
to run each, and the event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from sqlalchemy import select

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.db.session import platform_session
from bookwarden.monitor.fim.models import BaselineStatus, FimBaseline
from tests.invariants.audit_coverage import Command, command


def _watched(c) -> None:
    """FIM watches a small tree of the test's own, not the code (whose caches Python may write meanwhile)."""
    tree = c.home / "watched"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "settings.toml").write_text("mode = 'strict'\n")
    c.monkeypatch.setenv("BOOKWARDEN_FIM_PATHS", str(tree))


def _proposed(c):
    _watched(c)
    c.as_role("operator_ops")
    c.run("fim", "baseline")
    with platform_session(c.db) as session:
        return session.scalars(select(FimBaseline.id).where(FimBaseline.status == BaselineStatus.PROPOSED)).one()


@command("fim", "baseline")
def _(c):
    _watched(c)
    return Command(["fim", "baseline"], Action.FIM_BASELINE_PROPOSED, PLATFORM_CHAIN)


@command("fim", "approve")
def _(c):
    proposed = _proposed(c)
    c.as_role("ciso")  # another operator than the one who proposed it
    return Command(["fim", "approve", str(proposed)], Action.FIM_BASELINE_APPROVED, PLATFORM_CHAIN)


@command("fim", "reject")
def _(c):
    proposed = _proposed(c)
    c.as_role("ciso")
    return Command(["fim", "reject", str(proposed)], Action.FIM_BASELINE_REJECTED, PLATFORM_CHAIN)


@command("fim", "scan")
def _(c):
    proposed = _proposed(c)
    c.as_role("ciso")
    c.run("fim", "approve", str(proposed))
    return Command(["fim", "scan"], Action.FIM_SCANNED, PLATFORM_CHAIN)


@command("fim", "status")
def _(c):
    return Command(["fim", "status"], Action.FIM_STATUS_VIEWED, PLATFORM_CHAIN)


@command("monitor", "rootcheck")
def _(c):
    _watched(c)
    return Command(["monitor", "rootcheck"], Action.ROOTCHECK_RAN, PLATFORM_CHAIN)
