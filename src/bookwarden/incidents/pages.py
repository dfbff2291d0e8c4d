"""Incidents in the consoles. The operators' (`platform.incidents.handle`): the list, one incident with its
timeline, its next life-cycle step as a form (triage, containment, eradication, recovery, close with the
review) and marking it a personal-data breach. An institution's (`incidents.read`): the incidents that affect
it, each with its breach clock and the notice decisions; another institution's incident is not found.

The same services as the API's routes (incidents/routes.py), with the same input models; a refusal is shown
on the incident's page in the service's words."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.api.problems import record_refusal
from bookwarden.core.classification import Category
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import platform_session
from bookwarden.incidents import affected, service
from bookwarden.incidents.models import IncidentCategory, IncidentState, Severity
from bookwarden.incidents.routes import (
    AssignIn,
    BreachIn,
    DeclineIn,
    InstitutionIn,
    OpenIn,
    PatronDeclineIn,
    ReviewIn,
    StepIn,
    TriageIn,
)
from bookwarden.incidents.service import REVIEW_FIELDS
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()
OPERATOR, INSTITUTION = "/operator/incidents", "/console/incidents"
HANDLE = Depends(requires(Permission.PLATFORM_INCIDENTS_HANDLE))
READ = Depends(requires(Permission.INCIDENTS_READ))
NOTIFY = Depends(requires(Permission.INCIDENTS_NOTIFY))
Done = Annotated[str | None, Query(alias="done", max_length=20)]
DONE = {
    "triaged": "Triaged: each institution named now sees the incident.",
    "contained": "Containment recorded.",
    "eradicated": "Eradication recorded.",
    "recovered": "Recovery recorded: close it with the post-incident review.",
    "closed": "Closed with its review.",
    "breach": "Marked a personal-data breach: each affected institution's clock has started.",
    "opened": "Opened: the CISO is mailed at once.",
    "promoted": "The alert is an incident now (promoted again while it is open, it gives this one).",
    "assigned": "Assigned.",
    "notified": "The breach notice is on its way to the institution's security contacts and incident readers.",
    "declined": "Recorded: the institution is not notified, with your reason.",
}
TARGETS = ("actors", "addresses", "institutions", "records")  # the breach form's fields, BreachIn's targets
# The step each state leads to (the form the page shows).
NEXT_STEP = {
    IncidentState.TRIAGED: IncidentState.CONTAINED,
    IncidentState.CONTAINED: IncidentState.ERADICATED,
    IncidentState.ERADICATED: IncidentState.RECOVERED,
}
entry(
    Console.OPERATOR, "Incidents", "Incidents", OPERATOR, Permission.PLATFORM_INCIDENTS_HANDLE,
    "triage, contain, eradicate, recover, close; mark a breach",
)  # fmt: skip
entry(
    Console.INSTITUTION, "Security notices", "Incidents", INSTITUTION, Permission.INCIDENTS_READ,
    "incidents affecting your institution: breach clocks, notice decisions",
)  # fmt: skip


def _ids(text: str) -> list[str]:
    """A textarea's ids or addresses: one per line, or separated by commas or spaces."""
    return [part for part in re.split(r"[\s,]+", text or "") if part]


def _utc(value: str) -> str:
    """A datetime-local field's value (no zone) read as UTC, as the form says."""
    return value if re.search(r"(Z|[+-]\d\d:\d\d)$", value) else value + "+00:00"


def _db(request: Request):
    return request.app.state.db


# -- the handlers ---------------------------------------------------------------------------------------


@router.get(OPERATOR)
def incident_list(
    request: Request, principal: Principal = HANDLE, open_only: Annotated[bool, Query(alias="open")] = False
):
    """Incidents, newest first (only those not closed, when asked)."""
    with platform_session(_db(request)) as session:
        found = service.list_incidents(session, principal, open_only=open_only)
    return page(
        request, Console.OPERATOR, "console/incidents.html", title="Incidents", incidents=found, open_only=open_only,
        base=OPERATOR, **_open_form_context(),
    )  # fmt: skip


def _detail(request: Request, principal: Principal, incident_id: UUID, status_code: int = 200, **context):
    with platform_session(_db(request)) as session:
        found = service.read(session, principal, incident_id)
        handling = _handling_context(session, found)
    state = IncidentState(found.state)
    closable = state is IncidentState.RECOVERED or (
        state is IncidentState.TRIAGED and found.category == IncidentCategory.FALSE_POSITIVE
    )
    context = {"error": "", **context}
    return page(
        request, Console.OPERATOR, "console/incident.html", status_code=status_code, title=found.title,
        incident=found, next_step=NEXT_STEP.get(state), closable=closable, severities=list(Severity),
        categories=list(IncidentCategory), data_categories=list(Category), review_fields=REVIEW_FIELDS,
        **handling, **context,
    )  # fmt: skip


@router.get(OPERATOR + "/{incident_id}")
def incident_detail(request: Request, incident_id: UUID, principal: Principal = HANDLE, done_: Done = None):
    """One incident with its timeline and the form of its next step."""
    return _detail(request, principal, incident_id, done=done(done_, DONE))


def _acted(request: Request, principal: Principal, incident_id: UUID, past: str, act) -> object:
    try:
        act()
    except BookwardenError as refused:
        return _detail(request, principal, incident_id, status_code=refused.status, error=refused.detail)
    return RedirectResponse(f"{OPERATOR}/{incident_id}?done={past}", status_code=303)


@router.post(OPERATOR + "/{incident_id}/triage")
def triage(request: Request, incident_id: UUID, principal: Principal = HANDLE):
    """Severity, category and the institutions affected (each then sees the incident)."""

    def act():
        body = read_form(request, TriageIn, institutions=_ids(form(request).get("institutions", "")))
        affected.triage(
            _db(request), principal, incident_id, severity=body.severity, category=body.category,
            institutions=body.institutions, note=body.note,
        )  # fmt: skip

    return _acted(request, principal, incident_id, "triaged", act)


@router.post(OPERATOR + "/{incident_id}/steps")
def advance(request: Request, incident_id: UUID, principal: Principal = HANDLE):
    """Containment, eradication, recovery: in that order, each with what was done."""
    step = form(request).get("step", "")

    def act():
        body = read_form(request, StepIn)
        with platform_session(_db(request)) as session:
            service.advance(session, principal, incident_id, IncidentState(body.step), body.note)

    return _acted(request, principal, incident_id, step if step in DONE else "contained", act)


@router.post(OPERATOR + "/{incident_id}/close")
def close(request: Request, incident_id: UUID, principal: Principal = HANDLE):
    """Close with the post-incident review: every field of it required."""

    def act():
        review = read_form(request, ReviewIn)
        with platform_session(_db(request)) as session:
            service.close(session, principal, incident_id, {f: getattr(review, f) for f in REVIEW_FIELDS})

    return _acted(request, principal, incident_id, "closed", act)


@router.post(OPERATOR + "/{incident_id}/breach")
def mark_breach(request: Request, incident_id: UUID, principal: Principal = HANDLE):
    """A personal-data breach: whom it touched is found in the audit trail for the window and targets given."""
    fields = form(request)

    def act():
        given = {name: fields.get(name, "") for name in ("since", "until", "measures", "contact")}
        values = {name: _utc(value) if name in ("since", "until") else value for name, value in given.items() if value}
        values |= {
            "targets": {name: _ids(fields.get(name, "")) for name in TARGETS},
            "data": fields.getlist("data"),
            "notify": fields.get("notify") == "yes",
        }
        try:
            body = BreachIn.model_validate(values)
        except ValidationError as invalid:
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in invalid.errors()[:5]]
            raise InvalidInput("; ".join(problems) + "; nothing was changed") from None
        affected.mark_breach(
            _db(request), principal, incident_id, since=body.since, until=body.until,
            targets=body.targets.listed(), data=body.data, measures=body.measures, contact=body.contact,
            notify=body.notify,
        )  # fmt: skip

    return _acted(request, principal, incident_id, "breach", act)


# -- the institution --------------------------------------------------------------------------------------


@router.get(INSTITUTION)
def institution_incidents(request: Request, principal: Principal = READ):
    """The incidents that affect the reader's institution, newest first."""
    found = affected.institution_incidents(_db(request), principal)
    return page(request, Console.INSTITUTION, "console/institution_incidents.html", title="Incidents", incidents=found)


@router.get(INSTITUTION + "/{incident_id}")
def institution_incident(request: Request, incident_id: UUID, principal: Principal = READ, done_: Done = None):
    """One incident: the patrons and staff affected (by id), the breach clock and each notice or decision not to
    notify; the notice's acknowledgement (a button, for holders of incidents.notify)."""
    return _institution_page(request, principal, incident_id, done=done(done_, ACKNOWLEDGED))


def _institution_page(request: Request, principal: Principal, incident_id: UUID, status_code: int = 200, **context):
    found = affected.institution_incident(_db(request), principal, incident_id)
    return page(
        request, Console.INSTITUTION, "console/institution_incident.html", status_code=status_code, title=found.title,
        incident=found, can_acknowledge=Permission.INCIDENTS_NOTIFY in principal.permissions,
        **{"error": "", **context},
    )  # fmt: skip


ACKNOWLEDGED = {"acknowledged": "Receipt of the breach notice acknowledged: the platform stops reminding you."}


@router.post(INSTITUTION + "/{incident_id}/acknowledgement")
def acknowledge(request: Request, incident_id: UUID, principal: Principal = NOTIFY):
    """Acknowledge receipt of the breach notice (again: nothing changes)."""
    try:
        affected.acknowledge(_db(request), principal, incident_id)
    except Conflict as refused:
        record_refusal(request, refused)  # recorded as the API records it; shown on the page
        return _institution_page(request, principal, incident_id, status_code=refused.status, error=refused.detail)
    return RedirectResponse(f"{INSTITUTION}/{incident_id}?done=acknowledged", status_code=303)


# -- the institution's decision on its patrons' notices (incidents.notify) ---------------------------------

NOTICES_DONE = {
    "asked": "Asked: the notices leave when another holder of incidents.notify approves it (Approvals).",
    "declined": "Recorded: these patrons are not notified, with your reason.",
}


def _patron_notices(request: Request, principal: Principal, incident_id: UUID, status_code: int = 200, **context):
    with tenant_scope(request, principal) as session:
        found = affected.patron_notices(session, principal, incident_id)
        # The queue is read with accounts.read: a reader without it is sent to Approvals, not shown the list.
        queue = approvals.pending(session, principal) if Permission.ACCOUNTS_READ in principal.permissions else []
        waiting = [
            a for a in queue
            if a.action == SensitiveAction.SEND_BREACH_NOTICES and a.params.get("incident_id") == str(incident_id)
        ]  # fmt: skip
    context = {"error": "", "done": None, **context}
    return page(
        request, Console.INSTITUTION, "console/incident_patron_notices.html", status_code=status_code,
        title="Notices to the patrons affected", notices=found, waiting=waiting, **context,
    )  # fmt: skip


@router.get(INSTITUTION + "/{incident_id}/patron-notices")
def patron_notices(request: Request, incident_id: UUID, principal: Principal = NOTIFY, done_: Done = None):
    """The notice prepared for the patrons affected, who has been told or not, and the two decisions."""
    return _patron_notices(request, principal, incident_id, done=done(done_, NOTICES_DONE))


def _notices_decided(request: Request, principal: Principal, incident_id: UUID, past: str, act):
    try:
        with tenant_scope(request, principal) as session:
            act(session)
    except BookwardenError as refused:
        record_refusal(request, refused)  # recorded as the API records it; shown on the form
        return _patron_notices(request, principal, incident_id, status_code=refused.status, error=refused.detail)
    return RedirectResponse(f"{INSTITUTION}/{incident_id}/patron-notices?done={past}", status_code=303)


@router.post(INSTITUTION + "/{incident_id}/patron-notices/send")
def ask_to_send(request: Request, incident_id: UUID, principal: Principal = NOTIFY):
    """Send the prepared notices: asked here, sent when a second person approves (maker-checker, as the API)."""
    params = {"incident_id": str(incident_id)}
    return _notices_decided(
        request, principal, incident_id, "asked",
        lambda session: approvals.ask(session, principal, SensitiveAction.SEND_BREACH_NOTICES, params),
    )  # fmt: skip


@router.post(INSTITUTION + "/{incident_id}/patron-notices/declines")
def decline_patrons(request: Request, incident_id: UUID, principal: Principal = NOTIFY):
    """Not to notify the patrons whose notice waits, with the reason (GDPR Art. 34(3))."""
    body = read_form(request, PatronDeclineIn)
    return _notices_decided(
        request, principal, incident_id, "declined",
        lambda session: affected.decline_patrons(session, principal, incident_id, body.reason),
    )  # fmt: skip


# -- opening by hand, assigning, and the institutions' breach notices -----------------------------------------
# (the operators' side; each action is the API route's service call: POST /api/v1/operator/incidents,
# .../{id}/assign, .../{id}/breach/notices, .../{id}/breach/declines)


def _open_form_context() -> dict:
    return {"severities": list(Severity), "categories": list(IncidentCategory), "error": ""}


def _handling_context(session, found) -> dict:
    """The assignee's choices and, once a breach is marked, each affected institution with its notice decision."""
    handlers = service.handlers(session)
    scope: list[str] = []
    decided: dict[str, str] = {}
    for e in found.timeline:
        if e.kind == "breach_marked":
            scope = list(e.details.get("institutions", []))
        elif e.kind in ("institution_notified", "institution_not_notified") and "institution" in e.details:
            decided[str(e.details["institution"])] = "notified" if e.kind == "institution_notified" else "not notified"
    assignee = next((name for hid, name in handlers if hid == found.assignee_id), None)
    return {
        "handlers": handlers,
        "assignee": assignee,
        "breach_scope": [(institution, decided.get(institution)) for institution in scope],
    }


@router.post(OPERATOR)
def open_incident(request: Request, principal: Principal = HANDLE):
    """Open an incident by hand (service.open_incident); the CISO is mailed at once."""
    try:
        body = read_form(request, OpenIn)
        with platform_session(_db(request)) as session:
            incident = service.open_incident(
                session, principal, title=body.title, summary=body.summary, severity=body.severity,
                category=body.category,
            )  # fmt: skip
            incident_id = incident.id
    except BookwardenError as refused:
        with platform_session(_db(request)) as session:
            found = service.list_incidents(session, principal)
        return page(
            request, Console.OPERATOR, "console/incidents.html", status_code=refused.status, title="Incidents",
            incidents=found, open_only=False, base=OPERATOR, **{**_open_form_context(), "error": refused.detail},
        )  # fmt: skip
    return RedirectResponse(f"{OPERATOR}/{incident_id}?done=opened", status_code=303)


@router.post(OPERATOR + "/{incident_id}/assign")
def assign_incident(request: Request, incident_id: UUID, principal: Principal = HANDLE):
    """Assign to a handler: an active operator account whose role handles incidents (the service checks)."""

    def act():
        body = read_form(request, AssignIn)
        with platform_session(_db(request)) as session:
            service.assign(session, principal, incident_id, body.handler_id)

    return _acted(request, principal, incident_id, "assigned", act)


@router.post(OPERATOR + "/{incident_id}/breach/notices")
def send_breach_notice(request: Request, incident_id: UUID, principal: Principal = HANDLE):
    """Send one affected institution its breach notice (once: a second is refused in the service's words)."""

    def act():
        body = read_form(request, InstitutionIn)
        affected.notify_institution(_db(request), principal, incident_id, body.institution)

    return _acted(request, principal, incident_id, "notified", act)


@router.post(OPERATOR + "/{incident_id}/breach/declines")
def decline_breach_notice(request: Request, incident_id: UUID, principal: Principal = HANDLE):
    """Decide not to notify one affected institution, with the reason (never after its notice)."""

    def act():
        body = read_form(request, DeclineIn)
        affected.decline_institution(_db(request), principal, incident_id, body.institution, body.reason)

    return _acted(request, principal, incident_id, "declined", act)
