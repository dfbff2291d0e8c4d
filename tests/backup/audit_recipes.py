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


# -- offboarding -----------------------------------------------------------------------------------


def _another_operator():
    import uuid

    from bookwarden.core.permissions import Permission
    from bookwarden.core.principal import Principal, PrincipalKind

    return Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, frozenset({Permission.PLATFORM_TENANTS_OFFBOARD}))


def _asked(db, settings, tenant_id, grace_days=30):
    from bookwarden.backup import offboarding

    return offboarding.request_offboarding(db, _another_operator(), settings, tenant_id, grace_days=grace_days)


def _finished_row(db, state, **values):
    """An offboarding row as a finished step leaves it (the steps themselves need committed data)."""
    import uuid

    from bookwarden.backup.models import Offboarding

    row = Offboarding(
        id=uuid.uuid4(),
        institution_id=uuid.uuid4(),
        institution_slug="gone",
        institution_name="Gone University",
        state=state,
        wipe_method="nist-800-88-clear",
        grace_days=0,
        approval_id=uuid.uuid4(),
        requested_by=uuid.uuid4(),
        steps={},
        **values,
    )
    with platform_session(db) as session:
        session.add(row)
    return row


@route("POST", "/api/v1/operator/tenants/{tenant_id}/offboarding")
def _(w):
    url = f"/api/v1/operator/tenants/{w.tenant.id}/offboarding"
    return Call(w.operator, "POST", url, Action.OFFBOARDING_REQUESTED, PLATFORM_CHAIN, json={"grace_days": 30})


@route("GET", "/api/v1/operator/offboardings")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/offboardings", Action.OFFBOARDING_LISTED, PLATFORM_CHAIN)


@route("POST", "/api/v1/operator/offboardings/{offboarding_id}/approve")
def _(w):
    row = _asked(w.db, w.app.state.settings, w.tenant.id)
    url = f"/api/v1/operator/offboardings/{row.id}/approve"
    return Call(w.operator, "POST", url, Action.OFFBOARDING_APPROVED, PLATFORM_CHAIN)


@route("POST", "/api/v1/operator/offboardings/{offboarding_id}/cancel")
def _(w):
    row = _asked(w.db, w.app.state.settings, w.tenant.id)
    url = f"/api/v1/operator/offboardings/{row.id}/cancel"
    return Call(w.operator, "POST", url, Action.OFFBOARDING_CANCELLED, PLATFORM_CHAIN)


@route("GET", "/api/v1/operator/offboardings/{offboarding_id}/certificate")
def _(w):
    from bookwarden.backup.models import OffboardingState

    row = _finished_row(w.db, OffboardingState.CERTIFIED, certificate="{}")
    url = f"/api/v1/operator/offboardings/{row.id}/certificate"
    return Call(w.operator, "GET", url, Action.OFFBOARDING_CERTIFICATE_READ, PLATFORM_CHAIN)


@route("GET", "/api/v1/offboarding/export/{token}")
def _(w):
    from datetime import UTC, datetime, timedelta

    from bookwarden.backup import offboarding
    from bookwarden.backup.models import OffboardingState

    row = _finished_row(w.db, OffboardingState.EXPORTED, export_bytes=3)
    directory = offboarding.export_dir(w.app.state.settings, row.id)
    directory.mkdir(parents=True)
    (directory / offboarding.EXPORT_FILE).write_bytes(b"zip")
    token = offboarding.export_token(w.db.master, row.id, datetime.now(UTC) + timedelta(days=1))
    client = w.browser()
    return Call(
        client, "GET", f"/api/v1/offboarding/export/{token}", Action.OFFBOARDING_EXPORT_DOWNLOADED, PLATFORM_CHAIN
    )


@command("tenant", "offboard")
def _(c):
    c.tenant()
    return Command(["tenant", "offboard", "north", "--grace-days", "30"], Action.OFFBOARDING_REQUESTED, PLATFORM_CHAIN)


def _console_settings():
    from bookwarden.core.config import get_settings

    get_settings.cache_clear()
    return get_settings()


@command("tenant", "offboard-approve")
def _(c):
    row = _asked(c.db, _console_settings(), c.tenant())
    return Command(["tenant", "offboard-approve", str(row.id)], Action.OFFBOARDING_APPROVED, PLATFORM_CHAIN)


@command("tenant", "offboard-cancel")
def _(c):
    row = _asked(c.db, _console_settings(), c.tenant())
    return Command(["tenant", "offboard-cancel", str(row.id)], Action.OFFBOARDING_CANCELLED, PLATFORM_CHAIN)


@command("tenant", "offboardings")
def _(c):
    return Command(["tenant", "offboardings"], Action.OFFBOARDING_LISTED, PLATFORM_CHAIN)


@command("certificate", "show")
def _(c):
    from bookwarden.backup.models import OffboardingState

    row = _finished_row(c.db, OffboardingState.CERTIFIED, certificate="{}")
    return Command(["certificate", "show", str(row.id)], Action.OFFBOARDING_CERTIFICATE_READ, PLATFORM_CHAIN)
