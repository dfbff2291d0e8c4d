"""Backups, restores and audit checkpoints killed at every step: a backup that died is found and marked
failed by the next one, a restore that died leaves no half database under its target's name, and every
chain is sealed by the next checkpoint run and verifies."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text

from bookwarden.audit import signing
from bookwarden.audit.checkpoints import chain_ids, checkpoint_all, latest_checkpoint
from bookwarden.backup import service, snapshot
from bookwarden.backup.models import Backup, BackupKind, BackupStatus
from bookwarden.core.errors import Conflict
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from tests.conftest import TEST_DATABASE
from tests.crash.kill import chains_verify, die_at
from tests.helpers import acting

BACKUP_POINTS = ["backup.started", "backup.members_written", "backup.manifest_written"]
RESTORE_POINTS = ["restore.database_created", "restore.rows_loaded", "restore.checked"]
CHECKPOINT_POINTS = ["checkpoint.signed", "checkpoint.inserted", "checkpoint.chain_sealed"]
POINTS = BACKUP_POINTS + RESTORE_POINTS + CHECKPOINT_POINTS
OPERATOR = acting(
    None, Permission.PLATFORM_BACKUPS_MANAGE, Permission.PLATFORM_BACKUPS_READ, Permission.PLATFORM_BACKUPS_RESTORE
)


@pytest.fixture
def institution(committed_db, committed_tenant, settings, audit_holds):
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        for n in range(5):
            library.create(session, library.PATRONS, PatronCreate(name=f"Patron {n}"))
    return tenant_id


def _backups(db) -> list[Backup]:
    with platform_session(db) as session:
        found = list(session.scalars(select(Backup).order_by(Backup.started_at)))
        session.expunge_all()
    return found


@pytest.mark.parametrize("point", BACKUP_POINTS)
def test_a_backup_killed_anywhere_is_marked_failed_and_its_files_removed_by_the_next(
    committed_db, settings, admin_url, institution, point
):
    def take(db):
        service.take_backup(db, settings, admin_url, BackupKind.TENANT, institution, actor=OPERATOR)

    die_at(point, take, committed_db)
    [dead] = _backups(committed_db)
    assert dead.status == BackupStatus.RUNNING

    service.create_backup(committed_db, OPERATOR, settings, admin_url, BackupKind.TENANT, institution)

    dead, done = _backups(committed_db)
    assert dead.status == BackupStatus.FAILED and not Path(dead.directory).exists()
    assert done.status == BackupStatus.COMPLETE
    service.OpenedBackup(done, settings, committed_db.master).check_all()  # every chunk reads back


def test_a_restore_killed_at_each_step_in_turn_leaves_no_half_database_under_its_name(
    committed_db, settings, admin_url, institution
):
    """One restore killed at each of its steps in turn (a restore is the slow part: each kill reuses what the
    last one left), then finished: only a whole database ever carries the target's name."""
    backup = service.create_backup(committed_db, OPERATOR, settings, admin_url, BackupKind.TENANT, institution)
    opened = service.OpenedBackup(backup, settings, committed_db.master)
    target = f"{TEST_DATABASE}_crash_restore"
    partial = service.restoring_name(target)

    def restore(db):
        service.restore_backup(db, OPERATOR, settings, admin_url, backup.id, target)

    try:
        die_at("restore.database_created", restore, committed_db)
        assert snapshot.database_exists(admin_url, partial) and not snapshot.database_exists(admin_url, target)
        die_at("restore.rows_loaded", restore, committed_db)  # drops the empty one, restores, dies unchecked
        assert snapshot.database_exists(admin_url, partial) and not snapshot.database_exists(admin_url, target)
        die_at("restore.checked", restore, committed_db)  # drops the partial one, restores, checks, renames

        assert not snapshot.database_exists(admin_url, partial)
        assert service.table_mismatches(opened, admin_url, target) == []
        with psycopg.connect(snapshot.url_of(admin_url, target)) as conn:
            assert conn.execute("SELECT count(*) FROM patrons").fetchone()[0] == 5
        with pytest.raises(Conflict, match="exists"):  # whole already: a second restore changes nothing
            restore(committed_db)
    finally:
        snapshot.drop_database(admin_url, target)
        snapshot.drop_database(admin_url, partial)


@pytest.mark.parametrize("point", CHECKPOINT_POINTS)
def test_a_checkpoint_run_killed_anywhere_is_sealed_by_the_next(committed_db, committed_tenant, settings, point):
    for _ in range(2):
        tenant_id = committed_tenant()
        with tenant_session(committed_db, tenant_id) as session:
            library.create(session, library.PATRONS, PatronCreate(name="Sealed"))
    key = signing.load_signing_key(settings)
    heads = {}
    for chain in chain_ids(committed_db):
        with tenant_session(committed_db, chain) as session:
            heads[chain] = session.scalar(text("SELECT coalesce(max(seq), 0) FROM audit_events"))

    die_at(point, lambda db: checkpoint_all(db, key, every_events=None, every=None), committed_db)
    checkpoint_all(committed_db, key, every_events=None, every=None)

    keys = signing.TrustedKeys(key.public)
    for chain, head in heads.items():
        with tenant_session(committed_db, chain) as session:
            sealed = latest_checkpoint(session)
        assert sealed is not None and sealed.tree_size >= head and keys.check(sealed) is None
    chains_verify(committed_db, settings)
