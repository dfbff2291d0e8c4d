"""Audit-coverage recipes of the consoles' pages of alerts, blocked addresses, file integrity, incidents,
backups and drills, security reports and evidence (each area's pages.py): each page leaves the event its API
route leaves, in the same chain (registered on import by tests/web/audit_recipes.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.db.session import platform_session
from bookwarden.incidents import affected
from bookwarden.incidents import service as incidents
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.monitor.fim import service as fim
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.addresses import parse_network
from tests.helpers import acting
from tests.invariants.audit_coverage import Call, route
from tests.web.audit_recipes import form
from tests.web.console_recipes import get, staff

HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)


def _alert(w, institution_id=None) -> uuid.UUID:
    with platform_session(w.db) as session:
        return raise_alert(
            session, rule="page.recipe", title="A check failed", severity="high", institution_id=institution_id
        ).alert.id


# -- alerts -----------------------------------------------------------------------------------------------


@route("GET", "/operator/alerts")
def _(w):
    return get(w.operator_signed_in(), "/operator/alerts", Action.ALERT_LISTED, PLATFORM_CHAIN)


@route("GET", "/operator/alerts/{alert_id}")
def _(w):
    return get(w.operator_signed_in(), f"/operator/alerts/{_alert(w)}", Action.ALERT_VIEWED, PLATFORM_CHAIN)


@route("POST", "/operator/alerts/{alert_id}/acknowledge")
def _(w):
    url = f"/operator/alerts/{_alert(w)}"
    return form(w.operator_signed_in(), f"{url}/acknowledge", Action.ALERT_ACKNOWLEDGED, PLATFORM_CHAIN, {}, page=url)


@route("POST", "/operator/alerts/{alert_id}/close")
def _(w):
    url = f"/operator/alerts/{_alert(w)}"
    return form(w.operator_signed_in(), f"{url}/close", Action.ALERT_CLOSED, PLATFORM_CHAIN, {}, page=url)


@route("GET", "/console/alerts")
def _(w):
    return get(staff(w, "tenant_admin"), "/console/alerts", Action.ALERT_LISTED, w.tenant.id)


@route("GET", "/console/alerts/{alert_id}")
def _(w):
    url = f"/console/alerts/{_alert(w, w.tenant.id)}"
    return get(staff(w, "tenant_admin"), url, Action.ALERT_VIEWED, w.tenant.id)


# -- blocked addresses ------------------------------------------------------------------------------------


@route("GET", "/operator/blocks")
def _(w):
    return get(w.operator_signed_in(), "/operator/blocks", Action.ADDRESS_BLOCKS_LISTED, PLATFORM_CHAIN)


@route("POST", "/operator/blocks")
def _(w):
    fields = {"address": "2001:db8:7::/48", "minutes": "5", "reason": "a recipe"}
    return form(w.operator_signed_in(), "/operator/blocks", Action.ADDRESS_BLOCKED, PLATFORM_CHAIN, fields)


@route("POST", "/operator/blocks/{block_id}/unblock")
def _(w):
    with platform_session(w.db) as session:
        row = blocks.place(
            session, parse_network("203.0.113.201"), timedelta(hours=1), rule="manual", jail=None, offence=1, by=SYSTEM
        )
    url = f"/operator/blocks/{row.id}/unblock"
    return form(w.operator_signed_in(), url, Action.ADDRESS_UNBLOCKED, PLATFORM_CHAIN, {}, page="/operator/blocks")


# -- file integrity ---------------------------------------------------------------------------------------


@route("GET", "/operator/file-integrity")
def _(w):
    return get(w.operator_signed_in(), "/operator/file-integrity", Action.FIM_STATUS_VIEWED, PLATFORM_CHAIN)


def _proposed(w) -> uuid.UUID:
    """A baseline of a small tree of the test's own, proposed by another operator than the one who decides."""
    tree = w.request.getfixturevalue("tmp_path") / "watched"
    tree.mkdir(exist_ok=True)
    (tree / "settings.toml").write_text("mode = 'strict'\n")
    settings = w.app.state.settings.model_copy(update={"fim_paths": str(tree)})
    proposer = Principal(PrincipalKind.CONSOLE, uuid.uuid4(), None, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_OPS])
    return fim.propose(w.db, proposer, settings)[0].id


@route("POST", "/operator/file-integrity/{baseline_id}/approve")
def _(w):
    url = f"/operator/file-integrity/{_proposed(w)}/approve"
    page = "/operator/file-integrity"
    return form(w.operator_signed_in(), url, Action.FIM_BASELINE_APPROVED, PLATFORM_CHAIN, {}, page=page)


@route("POST", "/operator/file-integrity/{baseline_id}/reject")
def _(w):
    url = f"/operator/file-integrity/{_proposed(w)}/reject"
    page = "/operator/file-integrity"
    return form(w.operator_signed_in(), url, Action.FIM_BASELINE_REJECTED, PLATFORM_CHAIN, {}, page=page)


# -- incidents --------------------------------------------------------------------------------------------


def _incident(w, *institutions) -> uuid.UUID:
    with platform_session(w.db) as session:
        incident = incidents.open_incident(session, HANDLER, title="Recipe incident", summary="What happened.")
    if institutions:
        affected.triage(w.db, HANDLER, incident.id, severity="high", category="unauthorised_access",
                        institutions=list(institutions))  # fmt: skip
    return incident.id


@route("GET", "/operator/incidents")
def _(w):
    return get(w.operator_signed_in(), "/operator/incidents", Action.INCIDENT_LISTED, PLATFORM_CHAIN)


@route("GET", "/operator/incidents/{incident_id}")
def _(w):
    return get(w.operator_signed_in(), f"/operator/incidents/{_incident(w)}", Action.INCIDENT_VIEWED, PLATFORM_CHAIN)


@route("POST", "/operator/incidents/{incident_id}/triage")
def _(w):
    url = f"/operator/incidents/{_incident(w)}"
    fields = {"severity": "high", "category": "unauthorised_access", "institutions": str(w.tenant.id)}
    return form(w.operator_signed_in(), f"{url}/triage", Action.INCIDENT_TRIAGED, PLATFORM_CHAIN, fields, page=url)


@route("POST", "/operator/incidents/{incident_id}/steps")
def _(w):
    url = f"/operator/incidents/{_incident(w, w.tenant.id)}"
    fields = {"step": "contained", "note": "sessions revoked"}
    return form(w.operator_signed_in(), f"{url}/steps", Action.INCIDENT_ADVANCED, PLATFORM_CHAIN, fields, page=url)


@route("POST", "/operator/incidents/{incident_id}/close")
def _(w):
    incident_id = _incident(w, w.tenant.id)
    with platform_session(w.db) as session:
        for step in ("contained", "eradicated", "recovered"):
            incidents.advance(session, HANDLER, incident_id, incidents.IncidentState(step), f"{step}: done")
    url = f"/operator/incidents/{incident_id}"
    fields = {"root_cause": "a leak", "actions_taken": "revoked", "lessons_learned": "bind", "follow_up": "SEC-1"}
    return form(w.operator_signed_in(), f"{url}/close", Action.INCIDENT_CLOSED, PLATFORM_CHAIN, fields, page=url)


@route("POST", "/operator/incidents/{incident_id}/breach")
def _(w):
    w.records  # noqa: B018 - events of the institution in the window
    url = f"/operator/incidents/{_incident(w, w.tenant.id)}"
    fields = {
        "since": (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "institutions": str(w.tenant.id),
        "data": "identity",
        "measures": "The token was revoked.",
        "contact": "incidents@bookwarden.example",
    }
    return form(w.operator_signed_in(), f"{url}/breach", Action.BREACH_MARKED, PLATFORM_CHAIN, fields, page=url)


@route("GET", "/console/incidents")
def _(w):
    _incident(w, w.tenant.id)
    return get(staff(w, "tenant_admin"), "/console/incidents", Action.INCIDENT_LISTED, w.tenant.id)


@route("GET", "/console/incidents/{incident_id}")
def _(w):
    url = f"/console/incidents/{_incident(w, w.tenant.id)}"
    return get(staff(w, "tenant_admin"), url, Action.INCIDENT_VIEWED, w.tenant.id)


@route("POST", "/console/incidents/{incident_id}/acknowledgement")
def _(w):
    incident_id = _incident(w, w.tenant.id)
    affected.mark_breach(
        w.db, HANDLER, incident_id, since=datetime.now(UTC) - timedelta(hours=1),
        targets=[affected.BreachTarget("tenant", str(w.tenant.id))], data=["identity"], measures="Revoked.",
        contact="incidents@bookwarden.example",
    )  # fmt: skip
    url = f"/console/incidents/{incident_id}"
    client = staff(w, "security_officer")
    return form(client, f"{url}/acknowledgement", Action.BREACH_ACKNOWLEDGED, w.tenant.id, {}, page=url)


# -- backups, reports, evidence ---------------------------------------------------------------------------


@route("GET", "/operator/backups")
def _(w):
    return get(w.operator_signed_in(), "/operator/backups", Action.BACKUP_LISTED, PLATFORM_CHAIN)


@route("GET", "/operator/drills")
def _(w):
    return get(w.operator_signed_in(), "/operator/drills", Action.BACKUP_DRILLS_LISTED, PLATFORM_CHAIN)


@route("GET", "/console/security-report")
def _(w):
    return Call(staff(w, "auditor"), "GET", "/console/security-report", Action.SECURITY_REPORT_BUILT, w.tenant.id,
                params={"month": "2026-11"})  # fmt: skip


@route("GET", "/console/evidence")
def _(w):
    return get(staff(w, "auditor"), "/console/evidence", Action.EVIDENCE_BUILT, w.tenant.id)


@route("GET", "/operator/security-report")
def _(w):
    client = w.operator_signed_in()
    return Call(client, "GET", "/operator/security-report", Action.SECURITY_REPORT_BUILT, PLATFORM_CHAIN,
                params={"month": "2026-11"})  # fmt: skip


@route("GET", "/operator/evidence")
def _(w):
    return get(w.operator_signed_in(), "/operator/evidence", Action.EVIDENCE_BUILT, PLATFORM_CHAIN)
