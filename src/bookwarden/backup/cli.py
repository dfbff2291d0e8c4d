"""`bookwarden backup`: take, list, drill, restore and expire backups. `bookwarden tenant offboard...`: an
institution's offboarding (merged into the tenant group). `bookwarden certificate`: certificates of destruction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from bookwarden.audit.signing import decode_public_key
from bookwarden.backup import drill as drills
from bookwarden.backup import offboarding, service
from bookwarden.backup.certificate import verify_certificate
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
tenant_app = typer.Typer(name="tenant", help="Institutions (tenants).", no_args_is_help=True)
certificate_app = typer.Typer(name="certificate", help="Certificates of destruction.", no_args_is_help=True)
groups = (backup_app, tenant_app, certificate_app)


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


# -- offboarding -----------------------------------------------------------------------------------


def _offboarding_table(rows) -> Table:
    table = Table("id", "institution", "state", "method", "grace days", "requested", "grace ends", "finished")
    for row in rows:
        table.add_row(
            str(row.id),
            row.institution_slug,
            str(row.state),
            row.wipe_method,
            str(row.grace_days),
            when(row.requested_at),
            when(row.grace_ends_at),
            when(row.finished_at),
        )
    return table


def _carry_on(offboarding_id) -> None:
    settings = get_settings()
    row = offboarding.advance(connect(), settings, admin_url(settings), offboarding_id)
    out.print(_offboarding_table([row]))


@command(tenant_app, "offboard", Permission.PLATFORM_TENANTS_OFFBOARD)
def tenant_offboard(
    tenant: Annotated[str, typer.Argument(help="the institution (id or slug); with --resume, or the offboarding id")],
    grace_days: Annotated[int | None, typer.Option(help="days between the final export and destruction")] = None,
    method: Annotated[str | None, typer.Option(help="nist-800-88-clear (one pass) or dod-5220.22-m")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="carry an offboarding under way on now")] = False,
) -> None:
    """Ask for an institution's offboarding (another operator approves: `tenant offboard-approve`); its
    administrators are told. With --resume, carry the institution's offboarding on from its last step."""
    db = connect()
    if resume:
        with platform_session(db) as session:
            found = offboarding.open_offboarding(session, console_principal(), tenant)
        _carry_on(found.id)
        return
    row = offboarding.request_offboarding(
        db, console_principal(), get_settings(), tenant, grace_days=grace_days, wipe_method=method
    )
    err.print("asked; another operator approves with: bookwarden tenant offboard-approve " + str(row.id))
    out.print(_offboarding_table([row]))


@command(tenant_app, "offboard-approve", Permission.PLATFORM_TENANTS_OFFBOARD)
def tenant_offboard_approve(offboarding_id: str) -> None:
    """Approve an offboarding another operator asked; its final export is made and mailed at once."""
    chosen = uuid_option("OFFBOARDING_ID", offboarding_id)
    offboarding.approve_offboarding(connect(), console_principal(), chosen)
    _carry_on(chosen)


@command(tenant_app, "offboard-cancel", Permission.PLATFORM_TENANTS_OFFBOARD)
def tenant_offboard_cancel(offboarding_id: str) -> None:
    """Cancel an offboarding before its grace period ends: the export is wiped, the institution resumed."""
    chosen = uuid_option("OFFBOARDING_ID", offboarding_id)
    row = offboarding.cancel_offboarding(connect(), console_principal(), get_settings(), chosen)
    out.print(_offboarding_table([row]))


@command(tenant_app, "offboardings", Permission.PLATFORM_TENANTS_OFFBOARD)
def tenant_offboardings() -> None:
    """Offboardings, newest first: state, method, grace period."""
    with platform_session(connect()) as session:
        out.print(_offboarding_table(offboarding.list_offboardings(session, console_principal())))


@command(certificate_app, "show", Permission.PLATFORM_TENANTS_OFFBOARD)
def certificate_show(
    offboarding_id: str,
    output: Annotated[Path | None, typer.Option("--out", help="write it to this file (default: standard output)")] = (
        None
    ),
) -> None:
    """An offboarding's signed certificate of destruction, byte for byte as issued."""
    chosen = uuid_option("OFFBOARDING_ID", offboarding_id)
    with platform_session(connect()) as session:
        document = offboarding.read_certificate(session, console_principal(), chosen)
    if output is None:
        print(document.decode())
    else:
        output.write_bytes(document)
        err.print(f"written to {output}")


@certificate_app.command("verify")
def certificate_verify(
    file: Path,
    public_key: Annotated[
        list[str] | None,
        typer.Option(help="the platform's public key (base64, `bookwarden audit public-key`); repeatable"),
    ] = None,
) -> None:
    """Verify a certificate of destruction offline: exit 0 when it is intact and signed, 1 when not.

    Needs no database and no permission (declares none, records nothing): only the file, and the key.
    """
    pinned = [decode_public_key(k) for k in public_key] if public_key else None
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise fail(f"{file}: {exc.strerror}") from None
    found = verify_certificate(data, pinned)
    for note in found.notes:
        err.print(note)
    if not found.valid:
        for problem in found.problems:
            print(f"INVALID: {problem}")
        raise typer.Exit(1)
    c = found.certificate
    window = c["decryptable_from_backups_until"] or "never (no keyring backup held its keys)"
    print(
        f"valid: certificate {c['id']} of the destruction of {c['institution']['name']} ({c['institution']['id']}), "
        f"keys destroyed {c['destroyed']['keys']['at']}, signed by key {found.key_id}; "
        f"decryptable from backups until {window}"
    )


# Commands that must run with no database at all, so declare no permission and leave no event.
OFFLINE = {
    ("certificate", "verify"): "verifies a certificate file anywhere, trusting only the file and a given key",
}
