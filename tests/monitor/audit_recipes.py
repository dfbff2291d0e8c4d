"""Audit-coverage recipes of the monitor area: how to call each of its routes and commands, and the event each
must leave (run by tests/invariants/test_audit_coverage.py). `monitor replay` and `monitor rules` run offline
(monitor/cli.py OFFLINE). File integrity and rootcheck commands use the database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import platform_session
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.monitor.fim.models import BaselineStatus, FimBaseline
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.addresses import parse_network
from tests.invariants.audit_coverage import Call, Command, command, route


def _alert(db, institution_id=None) -> str:
    with platform_session(db) as session:
        recorded = raise_alert(
            session, rule="recipe.check", title="A check failed", severity="low", institution_id=institution_id
        )
        return str(recorded.alert.id)


@route("GET", "/api/v1/operator/alerts")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/alerts", Action.ALERT_LISTED, PLATFORM_CHAIN)


@route("GET", "/api/v1/operator/alerts/{alert_id}")
def _(w):
    return Call(w.operator, "GET", f"/api/v1/operator/alerts/{_alert(w.db)}", Action.ALERT_VIEWED, PLATFORM_CHAIN)


@route("POST", "/api/v1/operator/alerts/{alert_id}/acknowledge")
def _(w):
    url = f"/api/v1/operator/alerts/{_alert(w.db)}/acknowledge"
    return Call(w.operator, "POST", url, Action.ALERT_ACKNOWLEDGED, PLATFORM_CHAIN)


@route("POST", "/api/v1/operator/alerts/{alert_id}/close")
def _(w):
    return Call(
        w.operator, "POST", f"/api/v1/operator/alerts/{_alert(w.db)}/close", Action.ALERT_CLOSED, PLATFORM_CHAIN
    )


@route("GET", "/api/v1/alerts")
def _(w):
    return Call(w.admin, "GET", "/api/v1/alerts", Action.ALERT_LISTED, w.tenant.id)


@route("GET", "/api/v1/alerts/{alert_id}")
def _(w):
    return Call(w.admin, "GET", f"/api/v1/alerts/{_alert(w.db, w.tenant.id)}", Action.ALERT_VIEWED, w.tenant.id)


@command("monitor", "alerts")
def _(c):
    return Command(["monitor", "alerts"], Action.ALERT_LISTED, PLATFORM_CHAIN)


@command("monitor", "ack")
def _(c):
    return Command(["monitor", "ack", _alert(c.db)], Action.ALERT_ACKNOWLEDGED, PLATFORM_CHAIN)


@command("monitor", "close")
def _(c):
    return Command(["monitor", "close", _alert(c.db)], Action.ALERT_CLOSED, PLATFORM_CHAIN)


@command("monitor", "run")
def _(c):
    from bookwarden.jobs import worker
    from bookwarden.monitor.collect.pipeline import Pipeline

    c.monkeypatch.setattr(Pipeline, "run", lambda self, until=None: None)
    c.monkeypatch.setattr(worker, "stop_on_signals", lambda stop: None)  # the test runner keeps its signals
    return Command(["monitor", "run"], Action.SERVICE_STARTED, PLATFORM_CHAIN)


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


def _blocked(db, address: str) -> str:
    with platform_session(db) as session:
        row = blocks.place(
            session, parse_network(address), timedelta(hours=1), rule="manual", jail=None, offence=1, by=SYSTEM
        )
        return str(row.id)


@route("GET", "/api/v1/operator/blocks")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/blocks", Action.ADDRESS_BLOCKS_LISTED, PLATFORM_CHAIN)


@route("POST", "/api/v1/operator/blocks")
def _(w):
    body = {"address": "198.51.100.98", "minutes": 30, "reason": "scanner"}
    return Call(w.operator, "POST", "/api/v1/operator/blocks", Action.ADDRESS_BLOCKED, PLATFORM_CHAIN, json=body)


@route("DELETE", "/api/v1/operator/blocks/{block_id}")
def _(w):
    url = f"/api/v1/operator/blocks/{_blocked(w.db, '198.51.100.99')}"
    return Call(w.operator, "DELETE", url, Action.ADDRESS_UNBLOCKED, PLATFORM_CHAIN)


@command("monitor", "blocks")
def _(c):
    return Command(["monitor", "blocks", "--format", "json"], Action.ADDRESS_BLOCKS_LISTED, PLATFORM_CHAIN)


@command("monitor", "block")
def _(c):
    return Command(["monitor", "block", "2001:db8:7::/48", "--minutes", "5"], Action.ADDRESS_BLOCKED, PLATFORM_CHAIN)


@command("monitor", "unblock")
def _(c):
    _blocked(c.db, "203.0.113.201")
    return Command(["monitor", "unblock", "203.0.113.201"], Action.ADDRESS_UNBLOCKED, PLATFORM_CHAIN)
