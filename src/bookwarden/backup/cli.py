"""`bookwarden backup`: take, list, drill, restore and expire backups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from bookwarden.backup import drill as drills
from bookwarden.backup import service
from bookwarden.backup.models import BackupKind, DrillOutcome
from bookwarden.console import (
    Verdict,
    command,
    connect,
    console_principal,
    err,
    fail,
    institution_id,
    out,
    uuid_option,
    when,
)
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.db.server import admin_url
from bookwarden.db.session import platform_session

backup_app = typer.Typer(name="backup", help="Backups, restore drills and restores.", no_args_is_help=True)
groups = (backup_app,)


def _backup_table(backups) -> Table:
    table = Table("id", "kind", "tenant", "status", "started", "finished", "bytes", "chunks", "directory")
    for b in backups:
        table.add_row(
            str(b.id),
            str(b.kind),
            str(b.institution_id or "-"),
            str(b.status),
            when(b.started_at),
            when(b.finished_at),
            f"{b.stored_bytes or 0:,}",
            str(b.chunks or "-"),
            b.directory,
        )
    return table


def _take(kind: BackupKind, tenant=None):
    settings = get_settings()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bars:
        tasks: dict[str, int] = {}

        def advance(member: str, n: int) -> None:
            if member not in tasks:
                tasks[member] = bars.add_task(f"{kind.value} {member}", total=None)
            bars.update(tasks[member], advance=n)

        return service.create_backup(
            connect(), console_principal(), settings, admin_url(settings), kind, tenant, progress=advance
        )


@command(backup_app, "create", Permission.PLATFORM_BACKUPS_MANAGE)
def backup_create(
    tenant: Annotated[str | None, typer.Option(help="one institution's rows only (id or slug)")] = None,
    keyring: Annotated[bool, typer.Option("--keyring", help="the keyring database only")] = False,
) -> None:
    """Back up the platform (data, file areas, configuration; then the keyring, apart), one institution,
    or the keyring alone. Encrypted, chunked, with a signed manifest."""
    if tenant and keyring:
        raise fail("--tenant and --keyring: choose one")
    if tenant:
        made = [_take(BackupKind.TENANT, institution_id(tenant))]
    elif keyring:
        made = [_take(BackupKind.KEYRING)]
    else:
        made = [_take(BackupKind.PLATFORM), _take(BackupKind.KEYRING)]
    out.print(_backup_table(made))


@command(backup_app, "list", Permission.PLATFORM_BACKUPS_READ)
def backup_list(
    kind: Annotated[str | None, typer.Option(help="platform, tenant or keyring")] = None,
) -> None:
    """The backup catalogue, newest first: kind, status, sizes, folder."""
    chosen = BackupKind(kind) if kind else None
    with platform_session(connect()) as session:
        out.print(_backup_table(service.list_backups(session, console_principal(), chosen)))


@command(backup_app, "drill", Permission.PLATFORM_BACKUPS_MANAGE)
def backup_drill(
    backup_id: Annotated[str | None, typer.Argument(help="default: the newest complete platform backup")] = None,
) -> None:
    """Restore a backup into a scratch database and check it; exit 1 when any step fails."""
    settings = get_settings()
    result = drills.run_drill(
        connect(), console_principal(), settings, admin_url(settings), uuid_option("BACKUP_ID", backup_id)
    )
    _print_drill(result)
    if result.outcome == DrillOutcome.FAILED:
        raise Verdict(1)


def _print_drill(found) -> None:
    table = Table("step", "ok", "seconds", "detail")
    for step in found.steps:
        table.add_row(step["step"], "yes" if step["ok"] else "[red]NO[/red]", str(step["seconds"]), step["detail"])
    out.print(f"drill {found.id} of backup {found.backup_id}: {found.outcome}")
    out.print(table)


@command(backup_app, "drills", Permission.PLATFORM_BACKUPS_READ)
def backup_drills() -> None:
    """Drill history, newest first."""
    with platform_session(connect()) as session:
        found = drills.list_drills(session, console_principal())
    table = Table("id", "backup", "keyring backup", "started", "finished", "outcome", "failure")
    for d in found:
        table.add_row(
            str(d.id),
            str(d.backup_id),
            str(d.keyring_backup_id or "-"),
            when(d.started_at),
            when(d.finished_at),
            str(d.outcome),
            d.failure or "",
        )
    out.print(table)


@command(backup_app, "restore", Permission.PLATFORM_BACKUPS_RESTORE)
def backup_restore(
    backup_id: str,
    target: Annotated[str, typer.Option(help="the new database to restore into (must not exist)")],
    files_into: Annotated[Path | None, typer.Option(help="extract the backed-up file areas into this folder")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation (scripts)")] = False,
) -> None:
    """Restore a backup for real into a new database (and its file areas into a folder)."""
    chosen = uuid_option("BACKUP_ID", backup_id)
    if not yes and not typer.confirm(f"Restore backup {chosen} into the new database {target}?"):
        raise fail("not confirmed; nothing was restored")
    settings = get_settings()
    result = service.restore_backup(
        connect(), console_principal(), settings, admin_url(settings), chosen, target, files_into
    )
    out.print(result)


@command(backup_app, "expire", Permission.PLATFORM_BACKUPS_MANAGE)
def backup_expire() -> None:
    """Remove expired backups now (the worker does it daily): keep-daily/weekly/monthly, keyring by age."""
    settings = get_settings()
    removed = service.expire_backups(connect(), settings, admin_url(settings))
    out.print(f"{len(removed)} backups removed")
