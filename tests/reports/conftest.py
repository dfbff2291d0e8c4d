"""Fixtures of the reports tests: the settings reports are signed under, and a committed platform whose
every control holds (schedules declared as the worker declares them, a recent backup and drill in the
catalogue, each institution with a security contact, the monitor's collectors just moved on, an approved
file-integrity baseline of a small tree and a clean scan of it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from bookwarden import areas
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.backup.models import Backup, BackupDrill, BackupKind, BackupStatus, DrillOutcome
from bookwarden.core.config import Settings
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.monitor.collect.models import Position
from bookwarden.monitor.fim import service as fim


@pytest.fixture
def settings(home) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    return Settings(home=home, master_key=None, audit_signing_key=None, database_url=None, audit_retired_keys=None)


def declare_every_schedule(db) -> None:
    """What the worker does at start: every area's schedules."""
    for module in areas.modules("jobs"):
        if hasattr(module, "declare_schedules"):
            module.declare_schedules(db)


def catalogue_fresh_backups(db, now: datetime) -> tuple:
    """A complete platform and keyring backup of today and a drill of them that passed, as the daily jobs
    leave them in the catalogue (the backup tests take and drill real ones; here only the catalogue is read)."""
    with platform_session(db) as session:
        made = []
        for kind in (BackupKind.PLATFORM, BackupKind.KEYRING):
            backup = Backup(
                kind=kind,
                status=BackupStatus.COMPLETE,
                directory="/nonexistent",
                started_at=now,
                manifest_sha256="0" * 64,
            )
            backup.finished_at = now
            session.add(backup)
            made.append(backup)
        session.flush()
        drill = BackupDrill(
            backup_id=made[0].id,
            keyring_backup_id=made[1].id,
            started_at=now - timedelta(hours=1),
            finished_at=now,
            outcome=DrillOutcome.PASSED,
            steps=[],
        )
        session.add(drill)
    return made, drill


def operator(role: BuiltinRole = BuiltinRole.OPERATOR_OPS) -> Principal:
    return Principal(PrincipalKind.CONSOLE, uuid.uuid4(), None, BUILTIN_PERMISSIONS[role])


def watched_tree(home, tree) -> Settings:
    """Settings whose watched files are a small tree of their own (`tree`, made here)."""
    tree.mkdir(parents=True)
    (tree / "code.py").write_text("print('hello')\n")
    (tree / "settings.toml").write_text("mode = 'strict'\n")
    home.mkdir(parents=True, exist_ok=True)
    return Settings(home=home, fim_paths=str(tree), audit_signing_key=None, audit_retired_keys=None)


@pytest.fixture
def fim_settings(home, tmp_path) -> Settings:
    return watched_tree(home, tmp_path / "watched")


def approve_baseline(db, fim_settings: Settings):
    """A baseline proposed by one operator and approved by another (the CISO), as `bookwarden fim` does."""
    baseline, _ = fim.propose(db, operator(), fim_settings)
    with platform_session(db) as session:
        fim.decide(session, operator(BuiltinRole.CISO), baseline.id, fim_settings, approve=True)
    return baseline


def host_checks_sound(db, fim_settings: Settings):
    """An approved baseline and a clean scan of it, just now; (the baseline, the scan's id)."""
    baseline = approve_baseline(db, fim_settings)
    scan = fim.run_scan(db, fim_settings)
    assert scan.findings == []
    return baseline, scan.scan_id


def collectors_moved(db) -> None:
    """What the monitor's pipeline leaves after reading a batch: a position saved now."""
    with platform_session(db) as session:
        session.add(Position(source=f"file:/var/log/{uuid.uuid4().hex}.log", offset=10, updated_at=datetime.now(UTC)))


@pytest.fixture
def sound(committed_db, committed_tenant, fim_settings):
    """Two committed institutions on a platform whose every control holds."""
    tenants = [committed_tenant(), committed_tenant()]
    for n, tenant_id in enumerate(tenants):
        with tenant_session(committed_db, tenant_id) as session:
            add_security_contact(session, f"security{n}@example.org")
    declare_every_schedule(committed_db)
    now = datetime.now(UTC)
    backups, drill = catalogue_fresh_backups(committed_db, now)
    collectors_moved(committed_db)
    baseline, scan = host_checks_sound(committed_db, fim_settings)
    return SimpleNamespace(db=committed_db, tenants=tenants, backups=backups, drill=drill, baseline=baseline, scan=scan)
