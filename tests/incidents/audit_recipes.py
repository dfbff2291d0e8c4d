"""Audit-coverage recipes of the incidents area: how to call each of its routes and commands, and the event each
must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import select

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.classification import Category
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session
from bookwarden.identity.operators.models import OperatorAccount
from bookwarden.incidents import affected, service
from bookwarden.incidents.affected import BreachTarget
from bookwarden.incidents.models import IncidentCategory, IncidentState, Severity
from tests.helpers import acting
from tests.invariants.audit_coverage import Call, Command, command, route

HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)
OPS = "/api/v1/operator/incidents"
MINE = "/api/v1/incidents"
REVIEW = {
    "root_cause": "A misrouted alert.",
    "actions_taken": "Checked the trail; nothing was reached.",
    "lessons_learned": "Tune the rule.",
    "follow_up": "Rule reviewed next month.",
}


def _incident(db) -> UUID:
    with platform_session(db) as session:
        return service.open_incident(session, HANDLER, title="Recipe incident", summary="What happened.").id


def _triaged(db, tenant_id: UUID | None = None, category=IncidentCategory.UNAUTHORISED_ACCESS) -> UUID:
    incident_id = _incident(db)
    institutions = [tenant_id] if tenant_id else []
    affected.triage(db, HANDLER, incident_id, severity=Severity.HIGH, category=category, institutions=institutions)
    return incident_id


def _breach(db, tenant_id: UUID, *, notify: bool) -> UUID:
    incident_id = _triaged(db, tenant_id)
    affected.mark_breach(
        db,
        HANDLER,
        incident_id,
        since=datetime.now(UTC) - timedelta(hours=1),
        targets=[BreachTarget("tenant", str(tenant_id))],
        data=[Category.IDENTITY],
        measures="The token was revoked.",
        contact="incidents@bookwarden.example",
        notify=notify,
    )
    return incident_id


def _breach_body(tenant_id: UUID) -> dict:
    return {
        "since": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "targets": {"institutions": [str(tenant_id)]},
        "data": ["identity"],
        "measures": "The token was revoked.",
        "contact": "incidents@bookwarden.example",
        "notify": False,
    }


# -- the handlers' API ---------------------------------------------------------------------------


@route("GET", OPS)
def _(w):
    return Call(w.operator, "GET", OPS, Action.INCIDENT_LISTED, PLATFORM_CHAIN)


@route("POST", OPS)
def _(w):
    return Call(w.operator, "POST", OPS, Action.INCIDENT_OPENED, PLATFORM_CHAIN, json={"title": "T", "summary": "S"})


@route("POST", f"{OPS}/from-alert")
def _(w):
    body = {"alert": "alert-7", "summary": "Brute force seen by the monitor."}
    return Call(w.operator, "POST", f"{OPS}/from-alert", Action.INCIDENT_OPENED, PLATFORM_CHAIN, json=body)


@route("GET", f"{OPS}/{{incident_id}}")
def _(w):
    return Call(w.operator, "GET", f"{OPS}/{_incident(w.db)}", Action.INCIDENT_VIEWED, PLATFORM_CHAIN)


@route("POST", f"{OPS}/{{incident_id}}/assign")
def _(w):
    w.operator_enrolled("hana.ops", "operator_ops")
    with platform_session(w.db) as session:
        handler = session.scalars(select(OperatorAccount.id).where(OperatorAccount.username == "hana.ops")).one()
    url = f"{OPS}/{_incident(w.db)}/assign"
    return Call(w.operator, "POST", url, Action.INCIDENT_ASSIGNED, PLATFORM_CHAIN, json={"handler_id": str(handler)})


@route("POST", f"{OPS}/{{incident_id}}/triage")
def _(w):
    body = {"severity": "high", "category": "misuse", "institutions": [str(w.tenant.id)]}
    url = f"{OPS}/{_incident(w.db)}/triage"
    return Call(w.operator, "POST", url, Action.INCIDENT_TRIAGED, PLATFORM_CHAIN, json=body)


@route("POST", f"{OPS}/{{incident_id}}/steps")
def _(w):
    url = f"{OPS}/{_triaged(w.db)}/steps"
    body = {"step": IncidentState.CONTAINED.value, "note": "Token revoked."}
    return Call(w.operator, "POST", url, Action.INCIDENT_ADVANCED, PLATFORM_CHAIN, json=body)


@route("POST", f"{OPS}/{{incident_id}}/close")
def _(w):
    url = f"{OPS}/{_triaged(w.db, category=IncidentCategory.FALSE_POSITIVE)}/close"
    return Call(w.operator, "POST", url, Action.INCIDENT_CLOSED, PLATFORM_CHAIN, json={"review": REVIEW})


@route("POST", f"{OPS}/{{incident_id}}/breach")
def _(w):
    w.records  # noqa: B018 - a patron whose creation the breach's window holds
    url = f"{OPS}/{_triaged(w.db, w.tenant.id)}/breach"
    return Call(w.operator, "POST", url, Action.BREACH_MARKED, PLATFORM_CHAIN, json=_breach_body(w.tenant.id))


@route("POST", f"{OPS}/{{incident_id}}/breach/notices")
def _(w):
    url = f"{OPS}/{_breach(w.db, w.tenant.id, notify=False)}/breach/notices"
    body = {"institution": str(w.tenant.id)}
    return Call(w.operator, "POST", url, Action.BREACH_NOTIFIED, w.tenant.id, json=body)


@route("POST", f"{OPS}/{{incident_id}}/breach/declines")
def _(w):
    url = f"{OPS}/{_breach(w.db, w.tenant.id, notify=False)}/breach/declines"
    body = {"institution": str(w.tenant.id), "reason": "The data was encrypted and its key was not reached."}
    return Call(w.operator, "POST", url, Action.BREACH_NOT_NOTIFIED, w.tenant.id, json=body)


# -- the institution's ---------------------------------------------------------------------------


@route("GET", MINE)
def _(w):
    _triaged(w.db, w.tenant.id)
    return Call(w.client({Permission.INCIDENTS_READ}), "GET", MINE, Action.INCIDENT_LISTED, w.tenant.id)


@route("GET", f"{MINE}/{{incident_id}}")
def _(w):
    url = f"{MINE}/{_triaged(w.db, w.tenant.id)}"
    return Call(w.client({Permission.INCIDENTS_READ}), "GET", url, Action.INCIDENT_VIEWED, w.tenant.id)


def _with_patron_notices(w) -> UUID:
    w.records  # noqa: B018 - the patron the breach reached
    return _breach(w.db, w.tenant.id, notify=True)


@route("GET", f"{MINE}/{{incident_id}}/patron-notices")
def _(w):
    url = f"{MINE}/{_with_patron_notices(w)}/patron-notices"
    return Call(w.client({Permission.INCIDENTS_NOTIFY}), "GET", url, Action.INCIDENT_VIEWED, w.tenant.id)


@route("POST", f"{MINE}/{{incident_id}}/patron-notices/send")
def _(w):
    url = f"{MINE}/{_with_patron_notices(w)}/patron-notices/send"
    return Call(w.client({Permission.INCIDENTS_NOTIFY}), "POST", url, Action.APPROVAL_REQUESTED, w.tenant.id)


@route("POST", f"{MINE}/{{incident_id}}/patron-notices/declines")
def _(w):
    url = f"{MINE}/{_with_patron_notices(w)}/patron-notices/declines"
    body = {"reason": "Every patron concerned was told at the desk."}
    client = w.client({Permission.INCIDENTS_NOTIFY})
    return Call(client, "POST", url, Action.BREACH_NOT_NOTIFIED, w.tenant.id, json=body)


@route("POST", f"{MINE}/{{incident_id}}/acknowledgement")
def _(w):
    url = f"{MINE}/{_breach(w.db, w.tenant.id, notify=True)}/acknowledgement"
    return Call(w.client({Permission.INCIDENTS_NOTIFY}), "POST", url, Action.BREACH_ACKNOWLEDGED, w.tenant.id)


# -- the console ---------------------------------------------------------------------------------


@command("incident", "open")
def _(c):
    return Command(["incident", "open", "--title", "T", "--summary", "S"], Action.INCIDENT_OPENED, PLATFORM_CHAIN)


@command("incident", "promote")
def _(c):
    return Command(["incident", "promote", "alert-9", "--summary", "S"], Action.INCIDENT_OPENED, PLATFORM_CHAIN)


@command("incident", "list")
def _(c):
    return Command(["incident", "list", "--open"], Action.INCIDENT_LISTED, PLATFORM_CHAIN)


@command("incident", "show")
def _(c):
    return Command(["incident", "show", str(_incident(c.db))], Action.INCIDENT_VIEWED, PLATFORM_CHAIN)


@command("incident", "assign")
def _(c):
    args = ["incident", "assign", str(_incident(c.db)), "--handler", str(c.operator_id)]
    return Command(args, Action.INCIDENT_ASSIGNED, PLATFORM_CHAIN)


@command("incident", "triage")
def _(c):
    c.tenant()
    args = ["incident", "triage", str(_incident(c.db)), "--severity", "low", "--category", "other", "--tenant", "north"]
    return Command(args, Action.INCIDENT_TRIAGED, PLATFORM_CHAIN)


@command("incident", "contain")
def _(c):
    args = ["incident", "contain", str(_triaged(c.db)), "--note", "Sessions ended."]
    return Command(args, Action.INCIDENT_ADVANCED, PLATFORM_CHAIN)


def _advanced(db, upto: IncidentState) -> UUID:
    incident_id = _triaged(db)
    for step in (IncidentState.CONTAINED, IncidentState.ERADICATED, IncidentState.RECOVERED):
        if step == upto:
            break
        with platform_session(db) as session:
            service.advance(session, HANDLER, incident_id, step, f"{step} done")
    return incident_id


@command("incident", "eradicate")
def _(c):
    args = ["incident", "eradicate", str(_advanced(c.db, IncidentState.ERADICATED)), "--note", "Removed."]
    return Command(args, Action.INCIDENT_ADVANCED, PLATFORM_CHAIN)


@command("incident", "recover")
def _(c):
    args = ["incident", "recover", str(_advanced(c.db, IncidentState.RECOVERED)), "--note", "Restored."]
    return Command(args, Action.INCIDENT_ADVANCED, PLATFORM_CHAIN)


@command("incident", "close")
def _(c):
    incident_id = _triaged(c.db, category=IncidentCategory.FALSE_POSITIVE)
    args = ["incident", "close", str(incident_id)]
    for field, value in REVIEW.items():
        args += [f"--{field.replace('_', '-')}", value]
    return Command(args, Action.INCIDENT_CLOSED, PLATFORM_CHAIN)


@command("incident", "breach")
def _(c):
    c.tenant()
    args = [
        "incident", "breach", str(_triaged(c.db)), "--since", (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "--target", "tenant=north", "--data", "identity", "--measures", "Token revoked.",
        "--contact", "incidents@bookwarden.example", "--no-notify",
    ]  # fmt: skip
    return Command(args, Action.BREACH_MARKED, PLATFORM_CHAIN)


@command("incident", "notify")
def _(c):
    tenant_id = c.tenant()
    args = ["incident", "notify", str(_breach(c.db, tenant_id, notify=False)), "--tenant", "north"]
    return Command(args, Action.BREACH_NOTIFIED, tenant_id)


@command("incident", "decline")
def _(c):
    tenant_id = c.tenant()
    incident_id = _breach(c.db, tenant_id, notify=False)
    args = [
        "incident",
        "decline",
        str(incident_id),
        "--tenant",
        "north",
        "--reason",
        "No risk: the data was encrypted.",
    ]
    return Command(args, Action.BREACH_NOT_NOTIFIED, tenant_id)
