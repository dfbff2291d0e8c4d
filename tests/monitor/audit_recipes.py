"""Audit-coverage recipes of the monitor area: how to call each of its routes and commands, and the event each
must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from datetime import timedelta

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import platform_session
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.addresses import parse_network
from tests.invariants.audit_coverage import Call, Command, command, route


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
