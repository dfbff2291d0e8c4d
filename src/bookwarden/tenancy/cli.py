"""`bookwarden tenant`: institutions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bookwarden.access.permissions import Permission
from bookwarden.console import command, connect, console_principal, out
from bookwarden.core.config import get_settings
from bookwarden.db.session import platform_session
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
def tenant_create(slug: str, name: str) -> None:
    """Create an institution: its keys, its file area (0700), its row."""
    db = connect()
    with platform_session(db) as session:
        tenant = service.create_tenant(session, db.keyring, get_settings().resolved_home, slug, name)
    out.print(_tenant_table([tenant]))


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
