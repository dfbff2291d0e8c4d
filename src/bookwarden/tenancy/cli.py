"""`bookwarden tenant`: institutions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bookwarden.console import command, connect, console_principal, err, institution_id, out
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import first_administrator
from bookwarden.tenancy import service

tenant_app = typer.Typer(name="tenant", help="Institutions (tenants).", no_args_is_help=True)
groups = (tenant_app,)


# -- tenants -------------------------------------------------------------------------------


def _tenant_table(tenants) -> Table:
    table = Table("id", "slug", "name", "status", "created")
    for t in tenants:
        table.add_row(str(t.id), t.slug, t.name, t.status.value, t.created_at.isoformat(timespec="seconds"))
    return table


@command(tenant_app, "create", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_create(
    slug: str,
    name: str,
    admin_email: Annotated[
        str | None,
        typer.Option(help="its first administrator's address: an invitation is mailed there (nothing is printed)"),
    ] = None,
) -> None:
    """Create an institution: its keys, its file area (0700), its row; with --admin-email, its first
    administrator, invited by mail (identity/first_administrator.py)."""
    if admin_email is not None:
        admin_email = first_administrator.checked_address(admin_email)  # before anything is created
    db = connect()
    with platform_session(db) as session:
        tenant = service.register_institution(
            session, console_principal(), db.keyring, get_settings().resolved_home, slug, name
        )
    if admin_email is not None:
        with tenant_session(db, tenant.id) as session:
            sent = first_administrator.invite(session, db.master, console_principal(), admin_email)
        until = sent.expires_at.strftime("%H:%M UTC on %d %B %Y")
        err.print(f"invitation mailed to the first administrator; it works once, until {until}")
    out.print(_tenant_table([tenant]))


@command(tenant_app, "admin-enrolment", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_admin_enrolment(tenant: str) -> None:
    """Mail the first administrator (invitation accepted, password set) the link enrolling their second factor;
    only while they are the institution's only account. Nothing is printed."""
    db = connect()
    with tenant_session(db, institution_id(tenant)) as session:
        sent = first_administrator.send_enrolment_link(session, db.master, console_principal())
    until = sent.expires_at.strftime("%H:%M UTC on %d %B %Y")
    err.print(f"second-factor enrolment link mailed to the first administrator; it works once, until {until}")


@command(tenant_app, "list", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_list() -> None:
    """List institutions and their status."""
    with platform_session(connect()) as session:
        out.print(_tenant_table(service.show_tenants(session, console_principal())))


@command(tenant_app, "suspend", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_suspend(
    tenant: str, reason: Annotated[str, typer.Option(help="why; shown to every refused caller")]
) -> None:
    """Suspend an institution: every request for it is refused until resumed."""
    with platform_session(connect()) as session:
        out.print(_tenant_table([service.suspend_tenant(session, console_principal(), tenant, reason)]))


@command(tenant_app, "resume", Permission.PLATFORM_TENANTS_MANAGE)
def tenant_resume(tenant: str) -> None:
    """Lift a suspension."""
    with platform_session(connect()) as session:
        out.print(_tenant_table([service.resume_tenant(session, console_principal(), tenant)]))
