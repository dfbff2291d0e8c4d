"""Audit-coverage recipes of the institution console's pages for what was API-only (disclosures recorded,
publisher reports released and read, legal holds, the patrons' breach notices, the entitlement notices sent):
each page leaves the event its API route leaves (registered on import by tests/web/audit_recipes.py)."""

from __future__ import annotations

import uuid

from bookwarden.audit.events import Action
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.library import records as library
from bookwarden.privacy.retention import holds
from tests.incidents.audit_recipes import _with_patron_notices
from tests.invariants.audit_coverage import route
from tests.privacy.audit_recipes import REPORT_ASK, REPORT_CATALOGUE
from tests.web.audit_recipes import form
from tests.web.console_recipes import get, staff

DISCLOSURES = "/console/privacy/disclosures"
REPORTS = "/console/privacy/publisher-reports"
HOLDS = "/console/privacy/legal-holds"


def _patron(w) -> str:
    return w.records[library.PATRONS]["id"]


@route("POST", DISCLOSURES)
def _(w):
    fields = {
        "recipient": "County court", "kind": "legal_request", "purpose": "court_order", "basis": "legal_obligation",
        "categories": "identity", "patron_ids": _patron(w), "reference": "case 12",
    }  # fmt: skip
    return form(staff(w, "privacy_officer"), DISCLOSURES, Action.DISCLOSED, w.tenant.id, fields)


def _catalogue(w) -> None:
    loader = w.client({Permission.REPORTS_CATALOGUE_MANAGE})
    assert loader.post("/api/v1/reports/catalogue", content=REPORT_CATALOGUE).status_code == 200


@route("POST", REPORTS)
def _(w):
    _catalogue(w)
    fields = {**REPORT_ASK, "months": str(REPORT_ASK["months"])}
    return form(staff(w, "privacy_officer"), REPORTS, Action.PUBLISHER_REPORT_RELEASED, w.tenant.id, fields)


def _released(w, client) -> str:
    _catalogue(w)
    answer = form(client, REPORTS, None, None, {**REPORT_ASK, "months": "2"}).send()
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].split("?")[0]


@route("GET", REPORTS + "/{report_id}")
def _(w):
    client = staff(w, "privacy_officer")
    return get(client, _released(w, client), Action.PUBLISHER_REPORT_VIEWED, w.tenant.id)


@route("GET", REPORTS + "/{report_id}/csv")
def _(w):
    client = staff(w, "privacy_officer")
    return get(client, _released(w, client) + "/csv", Action.PUBLISHER_REPORT_VIEWED, w.tenant.id)


@route("GET", HOLDS)
def _(w):
    return get(staff(w, "privacy_officer"), HOLDS, Action.LEGAL_HOLD_LISTED, w.tenant.id)


@route("POST", HOLDS)
def _(w):
    fields = {"patron_id": _patron(w), "reason": "court order 12"}
    return form(staff(w, "privacy_officer"), HOLDS, Action.LEGAL_HOLD_PLACED, w.tenant.id, fields)


@route("POST", HOLDS + "/{hold_id}/lift")
def _(w):
    holder = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_HOLDS_MANAGE})
    patron_id = uuid.UUID(_patron(w))  # made through the API first, in its own request
    with tenant_session(w.db, w.tenant.id) as session:
        placed = holds.place(session, holder, reason="court order 12", patron_id=patron_id)
    url = f"{HOLDS}/{placed.id}/lift"
    return form(staff(w, "privacy_officer"), url, Action.LEGAL_HOLD_LIFTED, w.tenant.id, {}, page=HOLDS)


def _notices_page(w) -> str:
    return f"/console/incidents/{_with_patron_notices(w)}/patron-notices"


@route("GET", "/console/incidents/{incident_id}/patron-notices")
def _(w):
    return get(staff(w, "security_officer"), _notices_page(w), Action.INCIDENT_VIEWED, w.tenant.id)


@route("POST", "/console/incidents/{incident_id}/patron-notices/send")
def _(w):
    url = _notices_page(w)
    return form(staff(w, "security_officer"), url + "/send", Action.APPROVAL_REQUESTED, w.tenant.id, {}, page=url)


@route("POST", "/console/incidents/{incident_id}/patron-notices/declines")
def _(w):
    url, fields = _notices_page(w), {"reason": "Every patron concerned was told at the desk."}
    return form(
        staff(w, "security_officer"), url + "/declines", Action.BREACH_NOT_NOTIFIED, w.tenant.id, fields, page=url
    )
