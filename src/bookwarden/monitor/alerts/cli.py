"""`bookwarden monitor alerts | ack | close`: the stored alerts at the console (platform.alerts.*)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from bookwarden.console import choice, command, connect, console_principal, out, uuid_option, when
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session
from bookwarden.monitor.alerts import service
from bookwarden.monitor.alerts.models import AlertSeverity, AlertStatus
from bookwarden.monitor.cli import monitor_app

groups = ()  # its commands join the `monitor` group (monitor/cli.py)


@command(monitor_app, "alerts", Permission.PLATFORM_ALERTS_READ)
def monitor_alerts(
    status: Annotated[str | None, typer.Option(help="open, acknowledged or closed")] = None,
    severity: Annotated[str | None, typer.Option(help="this severity and above")] = None,
    rule: Annotated[str | None, typer.Option(help="one rule's alerts")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Stored alerts, most recent first: severity, rule, count, source, institution, status."""
    found = service.AlertFilter(
        status=choice("--status", status, AlertStatus) if status else None,
        severity_at_least=choice("--severity", severity, AlertSeverity) if severity else None,
        rule=rule,
        limit=limit,
    )
    with platform_session(connect()) as session:
        alerts = service.list_alerts(session, console_principal(), found)
    if fmt == "json":
        for stored in alerts:
            print(json.dumps(service.as_json(stored)))
        return
    table = Table("id", "severity", "rule", "count", "source", "institution", "first seen", "last seen", "status")
    for stored in alerts:
        table.add_row(
            str(stored.id),
            stored.severity,
            stored.rule,
            str(stored.count),
            stored.source_address or "-",
            str(stored.institution_id or "-"),
            when(stored.first_seen),
            when(stored.last_seen),
            stored.status,
        )
    out.print(table)


@command(monitor_app, "ack", Permission.PLATFORM_ALERTS_MANAGE)
def monitor_ack(alert_id: Annotated[str, typer.Argument(help="the alert's id")]) -> None:
    """Acknowledge an open alert (someone is on it; repeats still fold into it)."""
    with platform_session(connect()) as session:
        stored = service.acknowledge(session, console_principal(), uuid_option("ALERT_ID", alert_id))
    out.print(f"alert {stored.id} acknowledged")


@command(monitor_app, "close", Permission.PLATFORM_ALERTS_MANAGE)
def monitor_close(alert_id: Annotated[str, typer.Argument(help="the alert's id")]) -> None:
    """Close an alert: the next match of its rule and group opens a new one."""
    with platform_session(connect()) as session:
        stored = service.close(session, console_principal(), uuid_option("ALERT_ID", alert_id))
    out.print(f"alert {stored.id} closed")
