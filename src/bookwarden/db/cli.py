"""`bookwarden db`: the database server, roles and schema."""

from __future__ import annotations

import psycopg
import typer

from bookwarden.audit.events import Action
from bookwarden.console import command, command_succeeded, connect, err, record_action
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.permissions import Permission
from bookwarden.crypto.master import load_master_keys
from bookwarden.db import distribution, provision
from bookwarden.db.migrate import migrate
from bookwarden.db.provision import libpq
from bookwarden.db.server import admin_url, stop_embedded

db_app = typer.Typer(name="db", help="The database server, roles and schema.", no_args_is_help=True)
groups = (db_app,)


# -- db ------------------------------------------------------------------------------------


@command(db_app, "url", Permission.PLATFORM_DATABASE_MANAGE)
def db_url() -> None:
    """Print the administrative URL of the server in use, on Bookwarden's database (psql, pg_dump)."""
    settings = get_settings()
    url = libpq(admin_url(settings).set(database=settings.database_name))
    record_action(Action.DATABASE_URL_SHOWN)  # the URL carries the administrator's credentials
    print(url)


@command(db_app, "migrate", Permission.PLATFORM_DATABASE_MANAGE, unmapped=True)
def db_migrate() -> None:
    """Create roles and databases if needed, and bring both schemas up to date."""
    settings = get_settings()
    _migrated_urls(settings)
    record_action(Action.DATABASE_MIGRATED, database=settings.database_name)  # after: a fresh database has no trail yet
    err.print("[green]database is up to date[/green]")


@command(db_app, "stop", Permission.PLATFORM_DATABASE_MANAGE, unmapped=True)
def db_stop() -> None:
    """Stop the embedded PostgreSQL server (no effect with BOOKWARDEN_DATABASE_URL)."""
    settings = get_settings()
    # Recorded first: once stopped, no database is there to take the events. A database that cannot
    # take them (never migrated, say) must still be stoppable: the failure is reported, not fatal.
    try:
        record_action(Action.DATABASE_STOPPED, embedded=settings.database_url is None)
    except Exception as exc:
        err.print(f"[red]warning:[/red] the audit event of this stop was not recorded ({type(exc).__name__})")
    command_succeeded(Permission.PLATFORM_DATABASE_MANAGE)
    connect().dispose()  # its connections end now rather than be cut by the shutdown
    stopped = stop_embedded(settings.resolved_home / "pg")
    err.print("embedded server stopped" if stopped else "embedded server was not running")


@command(db_app, "distribution-plan", Permission.PLATFORM_DATABASE_MANAGE)
def db_distribution_plan() -> None:
    """Print the Citus statements that distribute every tenant table by tenant_id (co-located) and make platform
    tables reference tables, generated from the live catalog. Exits 1 when a table would block distribution."""
    settings = get_settings()
    urls = provision.database_urls(admin_url(settings), settings.database_name, load_master_keys(settings).current)
    with psycopg.connect(libpq(urls.owner)) as conn:
        plan = distribution.plan(distribution.read_tables(conn))
    print(plan.script(), end="")
    if plan.blockers:
        err.print(f"[red]{len(plan.blockers)} table(s) would block distribution[/red]")
        raise typer.Exit(1)


def _migrated_urls(settings: Settings):

    master = load_master_keys(settings)
    urls = provision.provision(admin_url(settings), settings.database_name, master.current)
    migrate(urls)
    return urls
