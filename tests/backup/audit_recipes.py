"""Audit-coverage recipes of the backup area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.backup import snapshot
from bookwarden.backup.models import BackupKind
from bookwarden.backup.service import latest_complete
from bookwarden.db.session import platform_session
from tests.conftest import TEST_DATABASE
from tests.invariants.audit_coverage import Call, Command, command, route


@route("GET", "/api/v1/operator/backups")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/backups", Action.BACKUP_LISTED, PLATFORM_CHAIN)


@route("GET", "/api/v1/operator/backups/drills")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/backups/drills", Action.BACKUP_DRILLS_LISTED, PLATFORM_CHAIN)


@command("backup", "create")
def _(c):
    c.tenant()
    return Command(["backup", "create", "--tenant", "north"], Action.BACKUP_CREATED, PLATFORM_CHAIN)


@command("backup", "list")
def _(c):
    return Command(["backup", "list"], Action.BACKUP_LISTED, PLATFORM_CHAIN)


@command("backup", "drill")
def _(c):
    c.tenant()
    c.run("backup", "create")
    return Command(["backup", "drill"], Action.BACKUP_DRILLED, PLATFORM_CHAIN)


@command("backup", "drills")
def _(c):
    return Command(["backup", "drills"], Action.BACKUP_DRILLS_LISTED, PLATFORM_CHAIN)


@command("backup", "restore")
def _(c):
    c.run("backup", "create", "--keyring")
    with platform_session(c.db) as session:
        backup = latest_complete(session, BackupKind.KEYRING)
    target = f"{TEST_DATABASE}_recipe_restore"
    c.later(lambda: snapshot.drop_database(c.admin_url, target))
    c.as_role("ciso")  # a real restore is the CISO's (ops back up and drill)
    return Command(
        ["backup", "restore", str(backup.id), "--target", target, "--yes"], Action.BACKUP_RESTORED, PLATFORM_CHAIN
    )


@command("backup", "expire")
def _(c):
    from datetime import UTC, datetime, timedelta

    from bookwarden.backup.models import Backup, BackupStatus

    with platform_session(c.db) as session:
        session.add(
            Backup(
                kind=BackupKind.KEYRING,
                status=BackupStatus.COMPLETE,
                directory="/nonexistent",
                started_at=datetime.now(UTC) - timedelta(days=400),
                manifest_sha256="0" * 64,
            )
        )
    return Command(["backup", "expire"], Action.BACKUP_REMOVED, PLATFORM_CHAIN)
