"""Audit-coverage recipes of the audit area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.permissions import (
    Permission,
)
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.invariants.audit_coverage import (
    Call,
    Command,
    command,
    route,
)


@route("GET", "/api/v1/audit/events")
def _(w):
    client = w.client({Permission.AUDIT_READ})
    return Call(client, "GET", "/api/v1/audit/events", Action.AUDIT_SEARCHED, w.tenant.id)


@route("GET", "/api/v1/audit/events/export")
def _(w):
    client = w.client({Permission.AUDIT_READ})
    return Call(client, "GET", "/api/v1/audit/events/export", Action.AUDIT_EXPORTED, w.tenant.id)


@route("GET", "/api/v1/operator/usage")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/usage", Action.USAGE_REPORTED, PLATFORM_CHAIN)


@command("audit", "search")
def _(c):
    return Command(["audit", "search", "--tenant", "north"], Action.AUDIT_SEARCHED, c.tenant())


@command("audit", "public-key")
def _(c):
    return Command(["audit", "public-key"], Action.AUDIT_KEY_VIEWED, PLATFORM_CHAIN)


@command("audit", "rotate-signing-key")
def _(c):
    return Command(["audit", "rotate-signing-key"], Action.KEY_ROTATED, PLATFORM_CHAIN)


@command("audit", "checkpoint")
def _(c):
    c.tenant()
    c.run("token", "list", "--tenant", "north")  # an event of its own to seal
    return Command(["audit", "checkpoint", "--tenant", "north"], Action.AUDIT_CHECKPOINTED, None)


@command("audit", "prove")
def _(c):
    c.tenant()
    c.run("token", "list", "--tenant", "north")
    c.run("audit", "checkpoint", "--tenant", "north")
    return Command(["audit", "prove", "--tenant", "north", "--seq", "1"], Action.AUDIT_PROVED, None)


@command("audit", "verify")
def _(c):
    return Command(["audit", "verify", "--tenant", "north"], Action.AUDIT_VERIFIED, c.tenant())


@command("audit", "export")
def _(c):
    output = str(c.home / "north-audit.tar.gz")
    return Command(["audit", "export", "--tenant", "north", "--output", output], Action.AUDIT_EXPORTED, c.tenant())


@command("usage", "report")
def _(c):
    c.tenant()
    return Command(["usage", "report"], Action.USAGE_REPORTED, PLATFORM_CHAIN)
