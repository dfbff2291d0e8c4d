"""Audit-coverage recipes of the reports area: how to call each of its routes and commands, and the event
each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.permissions import Permission
from bookwarden.db.session import tenant_session
from tests.invariants.audit_coverage import Call, Command, command, route
from tests.reports.conftest import (
    catalogue_fresh_backups,
    collectors_moved,
    declare_every_schedule,
    host_checks_sound,
    watched_tree,
)

MONTH = {"month": "2026-11"}


@route("GET", "/api/v1/reports/security")
def _(w):
    client = w.client({Permission.REPORTS_SECURITY_READ})
    return Call(client, "GET", "/api/v1/reports/security", Action.SECURITY_REPORT_BUILT, w.tenant.id, params=MONTH)


@route("GET", "/api/v1/evidence")
def _(w):
    client = w.client({Permission.REPORTS_SECURITY_READ})
    return Call(client, "GET", "/api/v1/evidence", Action.EVIDENCE_BUILT, w.tenant.id)


@route("GET", "/api/v1/operator/reports/security")
def _(w):
    url = "/api/v1/operator/reports/security"
    return Call(w.operator, "GET", url, Action.SECURITY_REPORT_BUILT, PLATFORM_CHAIN, params=MONTH)


@route("GET", "/api/v1/operator/evidence")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/evidence", Action.EVIDENCE_BUILT, PLATFORM_CHAIN)


@command("report", "security")
def _(c):
    tenant_id = c.tenant()
    return Command(
        ["report", "security", "--month", "2026-11", "--tenant", "north"], Action.SECURITY_REPORT_BUILT, tenant_id
    )


@command("evidence")
def _(c):
    # A platform whose every control holds (the command exits 1 otherwise): schedules declared as the worker
    # declares them, today's backups and drill in the catalogue, the institution's security contact, the monitor's
    # collectors just moved on, an approved file-integrity baseline and a clean scan.
    tenant_id = c.tenant()
    with tenant_session(c.db, tenant_id) as session:
        add_security_contact(session, "security@north.example")
    declare_every_schedule(c.db)
    catalogue_fresh_backups(c.db, datetime.now(UTC))
    collectors_moved(c.db)
    host_checks_sound(c.db, watched_tree(c.home, c.home / "fim-watched"))
    return Command(["evidence", "--tenant", "north"], Action.EVIDENCE_BUILT, tenant_id)
