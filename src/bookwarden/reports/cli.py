"""`bookwarden report security` and `bookwarden evidence`: the monthly security report and the live evidence.

Both read counts and control statuses, never an institution's data, so they take the platform permission
and no grant, for an institution too (a flagged exception: docs/architecture.md "The console").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bookwarden.console import Verdict, binary_output, command, connect, console_principal, err, fail, institution_id
from bookwarden.core.config import get_settings
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.reports import evidence, render, security
from bookwarden.reports.registry import Month

report_app = typer.Typer(name="report", help="Security reports.", no_args_is_help=True)
commands = typer.Typer()  # merged into the root: `bookwarden evidence`
groups = (report_app, commands)

Tenant = Annotated[str | None, typer.Option(help="one institution (id or slug); default: the platform")]
Output = Annotated[Path | None, typer.Option(help="write to this file (0600) instead of standard output")]


def _format(value: str) -> str:
    if value not in ("json", "html"):
        raise fail(f"--format: {value!r} is neither json nor html")
    return value


def _month(value: str) -> Month:
    try:
        return Month.parse(value)
    except InvalidInput as exc:
        raise fail(exc.detail) from None


@command(report_app, "security", Permission.PLATFORM_REPORTS_READ)
def report_security(
    month: Annotated[str, typer.Option(help="the month, YYYY-MM (UTC)")],
    tenant: Tenant = None,
    format: Annotated[str, typer.Option(help="json or html")] = "json",
    mail: Annotated[bool, typer.Option("--mail", help="also mail it to its designated contacts")] = False,
    output: Output = None,
) -> None:
    """The monthly security report of the platform or of one institution; --mail sends it to the
    institution's security contacts (or to management for the platform)."""
    chosen, fmt = _month(month), _format(format)
    tenant_id = institution_id(tenant) if tenant else None
    report = security.read_report(connect(), console_principal(), chosen, tenant_id, fmt)
    page = render.report_html(report) if fmt == "html" else json.dumps(report, indent=2)
    with binary_output(output) as sink:
        sink.write(page.encode() + b"\n")
    if mail:
        sent = security.mail_report(connect(), console_principal(), chosen, tenant_id)
        whom = "management (a job sends it)" if tenant_id is None else f"{sent} security contact(s)"
        err.print(f"mailed to {whom}")


@command(commands, "evidence", Permission.PLATFORM_REPORTS_READ)
def evidence_command(
    tenant: Tenant = None,
    format: Annotated[str, typer.Option(help="json or html")] = "json",
    output: Output = None,
) -> None:
    """Live evidence for every promise of the statement, checked now and signed; exit 1 when any control fails."""
    fmt = _format(format)
    tenant_id = institution_id(tenant) if tenant else None
    signed = evidence.build(connect(), console_principal(), get_settings(), tenant_id)
    page = render.evidence_html(signed) if fmt == "html" else json.dumps(signed, indent=2)
    with binary_output(output) as sink:
        sink.write(page.encode() + b"\n")
    if not signed["evidence"]["holds"]:
        raise Verdict(1)
