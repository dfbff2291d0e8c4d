"""`bookwarden incident`: open, list, show, assign, triage, contain, eradicate, recover, close; mark a breach
and notify (or decide not to notify) the institutions it affects. Every command needs platform.incidents.handle."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from bookwarden.console import (
    command,
    connect,
    console_principal,
    fail,
    institution_id,
    out,
    time_option,
    uuid_option,
    when,
)
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session
from bookwarden.incidents import affected, service
from bookwarden.incidents.affected import BreachTarget, Named
from bookwarden.incidents.models import IncidentCategory, IncidentState, Severity

incident_app = typer.Typer(
    name="incident", help="Security incidents and personal-data breach notice.", no_args_is_help=True
)
groups = (incident_app,)
HANDLE = Permission.PLATFORM_INCIDENTS_HANDLE
IncidentId = Annotated[str, typer.Argument(help="the incident's id")]
Note = Annotated[str, typer.Option(help="what was done")]


def _id(value: str):
    return uuid_option("INCIDENT_ID", value)


def _print(detail) -> None:
    out.print(json.dumps(detail.model_dump(mode="json"), indent=2))


@command(incident_app, "open", HANDLE)
def incident_open(
    title: Annotated[str, typer.Option(help="a short label; names no person")],
    summary: Annotated[str, typer.Option(help="what happened, as known now; names no person")],
    severity: Annotated[Severity, typer.Option()] = Severity.MEDIUM,
    category: Annotated[IncidentCategory, typer.Option()] = IncidentCategory.OTHER,
) -> None:
    """Open an incident by hand; the CISO is mailed at once."""
    with platform_session(connect()) as session:
        incident = service.open_incident(
            session, console_principal(), title=title, summary=summary, severity=severity, category=category
        )
        out.print(f"incident {incident.id} opened ({incident.severity})")


@command(incident_app, "promote", HANDLE)
def incident_promote(
    alert: Annotated[str, typer.Argument(help="the monitoring alert's id or reference")],
    summary: Annotated[str, typer.Option(help="what the alert found")],
    title: Annotated[str | None, typer.Option()] = None,
    severity: Annotated[Severity, typer.Option()] = Severity.HIGH,
    category: Annotated[IncidentCategory, typer.Option()] = IncidentCategory.OTHER,
) -> None:
    """Promote a monitoring alert to an incident."""
    with platform_session(connect()) as session:
        incident = service.open_from_alert(
            session, console_principal(), alert, summary, title=title, severity=severity, category=category
        )
        out.print(f"incident {incident.id} ({incident.state}) from alert {alert}")


@command(incident_app, "list", HANDLE)
def incident_list(open_only: Annotated[bool, typer.Option("--open", help="only those not closed")] = False) -> None:
    """Incidents, newest first."""
    with platform_session(connect()) as session:
        found = service.list_incidents(session, console_principal(), open_only=open_only)
    table = Table("id", "opened", "severity", "category", "state", "source", "breach", "title")
    for i in found:
        table.add_row(
            str(i.id), when(i.opened_at), i.severity, i.category, i.state, i.source,
            "yes" if i.personal_data_breach else "", i.title,
        )  # fmt: skip
    out.print(table)


@command(incident_app, "show", HANDLE)
def incident_show(incident_id: IncidentId) -> None:
    """One incident with its timeline, as JSON."""
    with platform_session(connect()) as session:
        _print(service.read(session, console_principal(), _id(incident_id)))


@command(incident_app, "assign", HANDLE)
def incident_assign(
    incident_id: IncidentId,
    handler: Annotated[str, typer.Option(help="the incident handler: an operator account's id or username")],
) -> None:
    """Assign to an incident handler (an operator whose role handles incidents)."""
    with platform_session(connect()) as session:
        incident = service.assign(session, console_principal(), _id(incident_id), service.handler_id(session, handler))
        out.print(f"incident {incident.id} assigned to {incident.assignee_id}")


@command(incident_app, "triage", HANDLE)
def incident_triage(
    incident_id: IncidentId,
    severity: Annotated[Severity, typer.Option()],
    category: Annotated[IncidentCategory, typer.Option()],
    tenant: Annotated[list[str] | None, typer.Option(help="an institution affected (id or slug); repeatable")] = None,
    subject: Annotated[
        list[str] | None, typer.Option(help="a patron affected, as INSTITUTION:PATRON_ID; repeatable")
    ] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Severity, category, institutions and patrons affected; stops the escalation."""
    subjects = []
    for item in subject or []:
        where, _, patron = item.partition(":")
        if not patron:
            raise fail(f"--subject {item!r}: give INSTITUTION:PATRON_ID")
        subjects.append(Named(institution_id(where), uuid_option("--subject", patron)))
    detail = affected.triage(
        connect(),
        console_principal(),
        _id(incident_id),
        severity=severity,
        category=category,
        institutions=[institution_id(t) for t in tenant or []],
        subjects=subjects,
        note=note,
    )
    out.print(f"incident {detail.id}: {detail.state}, {detail.severity}, {len(detail.institutions)} institutions")


# Containment, eradication, recovery: one command each, made from this table (one service call, in order).
STEP_COMMANDS = (
    ("contain", IncidentState.CONTAINED, "Containment done (what was done)."),
    ("eradicate", IncidentState.ERADICATED, "Eradication done (what was done)."),
    ("recover", IncidentState.RECOVERED, "Recovery done (what was done)."),
)


def _step_command(name: str, step: IncidentState, help_text: str) -> None:
    def advance(incident_id: IncidentId, note: Note) -> None:
        with platform_session(connect()) as session:
            incident = service.advance(session, console_principal(), _id(incident_id), step, note)
            out.print(f"incident {incident.id}: {incident.state}")

    advance.__name__ = advance.__qualname__ = f"incident_{name}"
    advance.__doc__ = help_text
    command(incident_app, name, HANDLE)(advance)


for _name, _step, _help in STEP_COMMANDS:
    _step_command(_name, _step, _help)


@command(incident_app, "close", HANDLE)
def incident_close(
    incident_id: IncidentId,
    root_cause: Annotated[str, typer.Option()],
    actions_taken: Annotated[str, typer.Option()],
    lessons_learned: Annotated[str, typer.Option()],
    follow_up: Annotated[str, typer.Option()],
) -> None:
    """Close with the post-incident review (every field required)."""
    review = {
        "root_cause": root_cause,
        "actions_taken": actions_taken,
        "lessons_learned": lessons_learned,
        "follow_up": follow_up,
    }
    with platform_session(connect()) as session:
        incident = service.close(session, console_principal(), _id(incident_id), review)
        out.print(f"incident {incident.id}: closed")


@command(incident_app, "breach", HANDLE)
def incident_breach(
    incident_id: IncidentId,
    since: Annotated[str, typer.Option(help="start of the window searched (ISO 8601)")],
    target: Annotated[list[str], typer.Option(help="KIND=VALUE: actor, address, tenant or target; repeatable")],
    data: Annotated[list[str], typer.Option(help="a category of personal data concerned; repeatable")],
    measures: Annotated[str, typer.Option(help="what was done to contain it and protect the people affected")],
    contact: Annotated[str, typer.Option(help="whom the institutions contact about it")],
    until: Annotated[str | None, typer.Option(help="end of the window (default: now)")] = None,
    notify: Annotated[bool, typer.Option(help="send each institution its notice now")] = True,
) -> None:
    """Mark a personal-data breach: find the institutions and patrons affected, start the clocks, notify."""
    targets = []
    for item in target:
        kind, _, value = item.partition("=")
        if not value:
            raise fail(f"--target {item!r}: give KIND=VALUE")
        if kind == "tenant":
            value = str(institution_id(value))
        targets.append(BreachTarget(kind, value))
    scope = affected.mark_breach(
        connect(),
        console_principal(),
        _id(incident_id),
        since=time_option("--since", since),
        until=time_option("--until", until),
        targets=targets,
        data=data,
        measures=measures,
        contact=contact,
        notify=notify,
    )
    table = Table("institution", "events", "patrons", "tell it by", "notified")
    for item in scope.institutions:
        table.add_row(
            str(item.institution), str(item.events), str(len(item.subjects)), when(item.processor_due_at),
            "yes" if item.notified else "no",
        )  # fmt: skip
    out.print(table)


@command(incident_app, "notify", HANDLE)
def incident_notify(
    incident_id: IncidentId, tenant: Annotated[str, typer.Option(help="the institution (id or slug)")]
) -> None:
    """Send one affected institution its breach notice (once)."""
    sent = affected.notify_institution(connect(), console_principal(), _id(incident_id), institution_id(tenant))
    out.print(f"notice sent to {sent} addresses")


@command(incident_app, "decline", HANDLE)
def incident_decline(
    incident_id: IncidentId,
    tenant: Annotated[str, typer.Option(help="the institution (id or slug)")],
    reason: Annotated[str, typer.Option(help="why it is not notified")],
) -> None:
    """Decide not to notify one affected institution, with the reason."""
    affected.decline_institution(connect(), console_principal(), _id(incident_id), institution_id(tenant), reason)
    out.print("decision recorded")
