"""The alerts in the consoles: operators list them (by severity and status), open one, acknowledge and close it
(`platform.alerts.*`); an institution lists and opens the alerts that concern it (`alerts.read`), another
institution's alert not found. The same services as the API's routes (monitor/alerts/routes.py)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BeforeValidator

from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import platform_session
from bookwarden.incidents import service as incidents
from bookwarden.incidents.models import IncidentCategory, Severity
from bookwarden.incidents.routes import FromAlertIn
from bookwarden.monitor.alerts import service
from bookwarden.monitor.alerts.models import AlertSeverity, AlertStatus
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import current, requires, tenant_scope
from bookwarden.web.templates import render

router = PageRouter()
OPERATOR, INSTITUTION = "/operator/alerts", "/console/alerts"
OPERATOR_READ = Depends(requires(Permission.PLATFORM_ALERTS_READ))
OPERATOR_MANAGE = Depends(requires(Permission.PLATFORM_ALERTS_MANAGE))
INSTITUTION_READ = Depends(requires(Permission.ALERTS_READ))
Done = Annotated[str | None, Query(alias="done", max_length=20)]
# The filter form sends "any" as an empty value (`?severity=&status=open`): blank means no filter.
Blank = BeforeValidator(lambda value: value or None)
SeverityQuery = Annotated[AlertSeverity | None, Blank, Query(alias="severity")]
StatusQuery = Annotated[AlertStatus | None, Blank, Query(alias="status")]
DONE = {
    "acknowledged": "Acknowledged: repeats still fold into it until it is closed.",
    "closed": "Closed: the next match of its rule opens a new alert.",
}
entry(
    Console.OPERATOR, "Alerts", "Alerts", OPERATOR, Permission.PLATFORM_ALERTS_READ,
    "what the rules raised: acknowledge, close",
)  # fmt: skip
entry(
    Console.INSTITUTION, "Security notices", "Security alerts", INSTITUTION, Permission.ALERTS_READ,
    "the platform's alerts that concern your institution",
)  # fmt: skip


def _filters(severity: AlertSeverity | None, status: AlertStatus | None) -> service.AlertFilter:
    return service.AlertFilter(status=status, severity_at_least=severity, limit=200)


def _list(request: Request, console: Console, alerts, severity, status, done_: str | None = None):
    principal = current(request)
    return page(
        request,
        console,
        "console/alerts.html",
        title="Security alerts" if console is Console.INSTITUTION else "Alerts",
        alerts=alerts,
        base=console.value + "/alerts",
        severities=list(AlertSeverity),
        statuses=list(AlertStatus),
        severity=severity,
        status=status,
        manage=console is Console.OPERATOR
        and principal is not None
        and Permission.PLATFORM_ALERTS_MANAGE in principal.permissions,
        done=done(done_, DONE),
    )


@router.get(OPERATOR)
def operator_alerts(
    request: Request,
    principal: Principal = OPERATOR_READ,
    severity: SeverityQuery = None,
    status: StatusQuery = None,
    done_: Done = None,
):
    """Every stored alert, most recent first; the severity filter keeps that severity and above."""
    with platform_session(request.app.state.db) as session:
        alerts = service.list_alerts(session, principal, _filters(severity, status))
    return _list(request, Console.OPERATOR, alerts, severity, status, done_)


@router.get(OPERATOR + "/{alert_id}")
def operator_alert(request: Request, alert_id: UUID, principal: Principal = OPERATOR_READ, done_: Done = None):
    with platform_session(request.app.state.db) as session:
        alert = service.get_alert(session, principal, alert_id)
    manage = Permission.PLATFORM_ALERTS_MANAGE in principal.permissions
    return page(
        request, Console.OPERATOR, "console/alert.html", title=alert.title, alert=alert, base=OPERATOR,
        manage=manage, done=done(done_, DONE), **_promote_context(principal),
    )  # fmt: skip


def _decision(verb: str, past: str, decide) -> None:
    @router.post(OPERATOR + "/{alert_id}/" + verb, name=f"page_{verb}_alert")
    def decision(request: Request, alert_id: UUID, principal: Principal = OPERATOR_MANAGE):
        with platform_session(request.app.state.db) as session:
            alert = decide(session, principal, alert_id)
        if request.headers.get("HX-Request") == "true":
            # From the list, with JavaScript: htmx swaps this row (and the status line) in place.
            return render(request, "console/alert_row.html", alert=alert, base=OPERATOR, manage=True, live=DONE[past])
        if form(request).get("back") == "list":  # the same form without JavaScript: back to the list
            return RedirectResponse(f"{OPERATOR}?done={past}", status_code=303)
        return RedirectResponse(f"{OPERATOR}/{alert_id}?done={past}", status_code=303)


_decision("acknowledge", "acknowledged", service.acknowledge)
_decision("close", "closed", service.close)


@router.get(INSTITUTION)
def institution_alerts(
    request: Request,
    principal: Principal = INSTITUTION_READ,
    severity: SeverityQuery = None,
    status: StatusQuery = None,
):
    """The alerts that concern the reader's institution, most recent first."""
    with tenant_scope(request, principal) as session:
        alerts = service.list_for_institution(session, principal, _filters(severity, status))
    return _list(request, Console.INSTITUTION, alerts, severity, status)


@router.get(INSTITUTION + "/{alert_id}")
def institution_alert(request: Request, alert_id: UUID, principal: Principal = INSTITUTION_READ):
    """Another institution's alert is not found, as a missing one."""
    with tenant_scope(request, principal) as session:
        alert = service.get_for_institution(session, principal, alert_id)
    return page(
        request, Console.INSTITUTION, "console/alert.html", title=alert.title, alert=alert, base=INSTITUTION,
        manage=False,
    )  # fmt: skip


# -- promoting an alert to an incident (incidents/service.py open_from_alert, as POST
# /api/v1/operator/incidents/from-alert): the alert's own page, for a handler of incidents ---------------------


INCIDENTS_HANDLE = Depends(requires(Permission.PLATFORM_INCIDENTS_HANDLE))


def _promote_context(principal: Principal) -> dict:
    return {
        "promote": Permission.PLATFORM_INCIDENTS_HANDLE in principal.permissions,
        "severities": list(Severity),
        "categories": list(IncidentCategory),
        "error": "",
    }


@router.post(OPERATOR + "/{alert_id}/promote")
def promote(request: Request, alert_id: UUID, principal: Principal = INCIDENTS_HANDLE):
    """The alert becomes an incident (the same alert again, while its incident is open, gives that incident).
    An alert that does not exist is not found before anything is opened."""
    with platform_session(request.app.state.db) as session:
        alert = service.get_alert(session, principal, alert_id)
        try:
            body = read_form(request, FromAlertIn, alert=str(alert.id))
        except InvalidInput as refused:  # the form shown again; nothing but the reading is recorded
            return page(
                request, Console.OPERATOR, "console/alert.html", status_code=refused.status, title=alert.title,
                alert=alert, base=OPERATOR, manage=Permission.PLATFORM_ALERTS_MANAGE in principal.permissions,
                **{**_promote_context(principal), "error": refused.detail},
            )  # fmt: skip
        incident = incidents.open_from_alert(
            session, principal, body.alert, body.summary, title=body.title, severity=body.severity,
            category=body.category,
        )  # fmt: skip
        incident_id = incident.id
    return RedirectResponse(f"/operator/incidents/{incident_id}?done=promoted", status_code=303)
