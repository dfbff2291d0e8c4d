"""`bookwarden`: every operation an operator runs by hand."""

from __future__ import annotations

import sys
import threading
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bookwarden.config import Settings, get_settings
from bookwarden.errors import BookwardenError

app = typer.Typer(
    help="Bookwarden: library customer data under an enforced security and privacy model.",
    pretty_exceptions_enable=False,  # its tracebacks print local variables: secrets among them
    no_args_is_help=True,
)
db_app = typer.Typer(help="The database server, roles and schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Institutions (tenants).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="Master and tenant keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: verify, export, search.", no_args_is_help=True)
usage_app = typer.Typer(help="Usage metering for charges, derived from the audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(usage_app, name="usage")

out = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _connect():
    from bookwarden.db.session import connect

    return connect(get_settings())


def _migrated_urls(settings: Settings):
    from bookwarden.crypto.master import load_master_keys
    from bookwarden.db import provision
    from bookwarden.db.migrate import migrate
    from bookwarden.db.server import admin_url

    master = load_master_keys(settings)
    urls = provision.provision(admin_url(settings), settings.database_name, master.current)
    migrate(urls)
    return urls


# -- db ------------------------------------------------------------------------------------


@db_app.command("url")
def db_url() -> None:
    """Print the administrative URL of the server in use, on Bookwarden's database (psql, pg_dump)."""
    from bookwarden.db.provision import libpq
    from bookwarden.db.server import admin_url

    settings = get_settings()
    print(libpq(admin_url(settings).set(database=settings.database_name)))


@db_app.command("migrate")
def db_migrate() -> None:
    """Create roles and databases if needed, and bring both schemas up to date."""
    _migrated_urls(get_settings())
    err.print("[green]database is up to date[/green]")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server (no effect with BOOKWARDEN_DATABASE_URL)."""
    from bookwarden.db.server import stop_embedded

    settings = get_settings()
    stopped = stop_embedded(settings.resolved_home / "pg")
    err.print("embedded server stopped" if stopped else "embedded server was not running")


# -- tenants -------------------------------------------------------------------------------


def _tenant_table(tenants) -> Table:
    table = Table("id", "slug", "name", "status", "created")
    for t in tenants:
        table.add_row(str(t.id), t.slug, t.name, t.status.value, t.created_at.isoformat(timespec="seconds"))
    return table


@tenant_app.command("create")
def tenant_create(slug: str, name: str) -> None:
    """Create an institution: its keys, its file area (0700), its row."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    db = _connect()
    with platform_session(db) as session:
        tenant = service.create_tenant(session, db.keyring, get_settings().resolved_home, slug, name)
    out.print(_tenant_table([tenant]))


@tenant_app.command("list")
def tenant_list() -> None:
    """List institutions and their status."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    with platform_session(_connect()) as session:
        out.print(_tenant_table(service.list_tenants(session)))


@tenant_app.command("suspend")
def tenant_suspend(
    tenant: str, reason: Annotated[str, typer.Option(help="why; shown to every refused caller")]
) -> None:
    """Suspend an institution: every request for it is refused until resumed."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    with platform_session(_connect()) as session:
        out.print(_tenant_table([service.suspend_tenant(session, tenant, reason)]))


@tenant_app.command("resume")
def tenant_resume(tenant: str) -> None:
    """Lift a suspension."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    with platform_session(_connect()) as session:
        out.print(_tenant_table([service.resume_tenant(session, tenant)]))


# -- tokens --------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="a platform operator token instead")] = False,
    name: Annotated[str, typer.Option(help="what the token is for")] = "api",
    permission: Annotated[list[str] | None, typer.Option(help="repeatable; see --role for bundles")] = None,
    role: Annotated[str | None, typer.Option(help="give the token a built-in role's permissions")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="lifetime in days")] = 90,
) -> None:
    """Create an API token; it is printed once and stored only as a hash.

    Default permissions: read and write the hosted library data (tenant), manage tenants (operator).
    """
    from bookwarden.access.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole, Permission
    from bookwarden.db.session import platform_session, tenant_session
    from bookwarden.identity import tokens
    from bookwarden.tenancy import service

    if operator == (tenant is not None):
        raise _fail("give either --tenant or --operator")
    try:
        chosen = {Permission(p) for p in permission or []} | set(BUILTIN_PERMISSIONS[BuiltinRole(role)] if role else ())
    except ValueError as exc:
        permissions = ", ".join(p.value for p in Permission)
        raise _fail(f"{exc}; permissions: {permissions}; roles: {', '.join(r.value for r in BuiltinRole)}") from None
    db = _connect()
    if operator:
        with platform_session(db) as session:
            _, secret = tokens.issue_operator_token(
                session, name, sorted(chosen or {Permission.PLATFORM_TENANTS_MANAGE}), timedelta(days=days)
            )
    else:
        with platform_session(db) as session:
            tenant_id = service.get_tenant(session, tenant).id
        with tenant_session(db, tenant_id) as session:
            _, secret = tokens.issue_api_token(
                session, name, sorted(chosen or LIBRARY_READ | LIBRARY_WRITE), timedelta(days=days)
            )
    print(secret)


# -- keys ----------------------------------------------------------------------------------


@keys_app.command("rotate-tenant")
def keys_rotate_tenant(tenant: str) -> None:
    """New tenant data key; re-wrap every subject key under it (no data re-encrypted). Resumable."""
    from bookwarden.db.session import platform_session
    from bookwarden.tenancy import service

    db = _connect()
    with platform_session(db) as session:
        tenant_id = service.get_tenant(session, tenant).id
    count = db.keyring.rotate_tenant_key(tenant_id)
    err.print(f"tenant key rotated; {count} subject keys re-wrapped")


@keys_app.command("rotate-master")
def keys_rotate_master() -> None:
    """New master key; re-wrap every tenant key under it. Key-file mode only; resumable after a crash."""
    from bookwarden.crypto import rotation

    settings = get_settings()
    if settings.master_key is not None:
        raise _fail(
            "the master key comes from BOOKWARDEN_MASTER_KEY; rotate it in your secret store, "
            "unset the variable to use the key file, or see README 'Keys'"
        )
    count = rotation.rotate_master(settings)
    err.print(f"master key rotated; {count} tenant keys re-wrapped")


# -- processes -----------------------------------------------------------------------------


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP API."""
    import uvicorn

    from bookwarden import logs
    from bookwarden.api.app import create_app

    settings = get_settings()
    logs.configure(settings.log_level)
    uvicorn.run(create_app(_connect(), settings), host=host, port=port, log_config=None, access_log=False)


@app.command()
def worker(name: Annotated[str, typer.Option(help="worker name in job leases")] = "worker") -> None:
    """Run background jobs until SIGTERM/SIGINT."""
    from bookwarden import logs
    from bookwarden.jobs.housekeeping import declare_all
    from bookwarden.jobs.worker import Worker, stop_on_signals

    settings = get_settings()
    logs.configure(settings.log_level)
    stop = threading.Event()
    stop_on_signals(stop)
    db = _connect()
    declare_all(db)
    Worker(db, name).run_forever(stop)


@app.command()
def demo() -> None:
    """Seed two demo institutions (once); print a fresh API token and desk sign-in for each."""
    from bookwarden import demo as demo_data

    for slug, given in demo_data.seed(_connect(), get_settings()).items():
        out.print(f"[bold]{slug}[/bold] API token: {given.api_token}")
        out.print(
            f"[bold]{slug}[/bold] sign-in: institution {slug}, user {given.desk_username}, "
            f"password {given.desk_password}"
        )


# -- audit -----------------------------------------------------------------------------------


# -- usage -----------------------------------------------------------------------------------


def main() -> None:
    try:
        app()
    except BookwardenError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        sys.exit(2)


if __name__ == "__main__":
    main()
