"""Erasure reaches backups, end to end: a patron erased after a backup cannot be read from that backup
once the keyring backups of the window have expired, while every other patron still can; and inside
the window they still can be read, so the window the certificate states is honest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bookwarden.audit import signing
from bookwarden.backup import drill as drills
from bookwarden.backup import service, snapshot
from bookwarden.backup.models import Backup, BackupKind, BackupStatus
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.privacy.subjects import erasure
from tests.backup.test_backups import OPERATOR
from tests.conftest import TEST_DATABASE


@pytest.fixture
def before_erasure(committed_db, settings, admin_url, world):
    """A data backup and a keyring backup taken while every patron exists; then one patron erased and a
    fresh keyring backup (without that patron's key) taken, as the daily job would."""
    tenant_id = world.tenants[0]
    erased = world.patrons[tenant_id][0]
    data = service.create_backup(committed_db, OPERATOR, settings, admin_url, BackupKind.PLATFORM)
    old_keys = service.create_backup(committed_db, OPERATOR, settings, admin_url, BackupKind.KEYRING)
    with tenant_session(committed_db, tenant_id) as session:
        certificate = erasure.erase_patron(session, erased, signing_key=signing.load_signing_key(settings))
    new_keys = service.create_backup(committed_db, OPERATOR, settings, admin_url, BackupKind.KEYRING)
    everyone_else = [p for t in world.tenants for p in world.patrons[t] if p != erased]
    return data, old_keys, new_keys, erased, everyone_else, certificate


def _read_from_backups(db, settings, admin_url, data: Backup, keys: Backup, patron_ids) -> tuple[int, int]:
    """Restore `data` and `keys` into scratch databases; (decrypted, keyless) for these patrons."""
    scratch = f"{TEST_DATABASE}_erasure_{uuid.uuid4().hex[:8]}"
    try:
        with platform_session(db) as session:
            data, keys = session.get(Backup, data.id), session.get(Backup, keys.id)
        opened_data = service.OpenedBackup(data, settings, db.master)
        service.restore_into(opened_data, admin_url, scratch, live_database=TEST_DATABASE, keep_owners=False)
        opened_keys = service.OpenedBackup(keys, settings, db.master)
        service.restore_into(opened_keys, admin_url, scratch + "_kr", live_database=TEST_DATABASE, keep_owners=False)
        return drills.sample_fields(admin_url, scratch, scratch + "_kr", db.master, patron_ids=patron_ids)
    finally:
        snapshot.drop_database(admin_url, scratch)
        snapshot.drop_database(admin_url, scratch + "_kr")


def test_once_the_window_has_passed_the_erased_patron_cannot_be_read_from_the_old_backup(
    committed_db, settings, admin_url, before_erasure
):
    data, old_keys, new_keys, erased, everyone_else, _ = before_erasure
    # The window passes: the keyring backup taken before the erasure is now older than its retention.
    aged = datetime.now(UTC) - timedelta(days=settings.keyring_backup_retention_days + 1)
    with platform_session(committed_db) as session:
        session.execute(update(Backup).where(Backup.id == old_keys.id).values(started_at=aged))

    removed = service.expire_backups(committed_db, settings, admin_url)

    assert old_keys.id in removed and new_keys.id not in removed and data.id not in removed
    assert not Path(old_keys.directory).exists()
    with platform_session(committed_db) as session:
        assert session.get(Backup, old_keys.id).status == BackupStatus.REMOVED
        (oldest_kept,) = [
            b for b in session.query(Backup).filter(Backup.kind == BackupKind.KEYRING,
                                                    Backup.status == BackupStatus.COMPLETE)
        ]  # fmt: skip
    assert oldest_kept.id == new_keys.id
    # The old data backup still holds the erased patron's row, as ciphertext; the keys that remain cannot
    # open it, while every other patron of the same backup still reads.
    decrypted, keyless = _read_from_backups(committed_db, settings, admin_url, data, oldest_kept, [erased])
    assert (decrypted, keyless) == (0, 1)
    decrypted, keyless = _read_from_backups(committed_db, settings, admin_url, data, oldest_kept, everyone_else)
    assert (decrypted, keyless) == (len(everyone_else), 0)


def test_inside_the_window_the_erased_patron_is_still_readable_and_the_certificate_says_until_when(
    committed_db, settings, admin_url, before_erasure
):
    data, old_keys, _, erased, _, certificate = before_erasure

    assert service.expire_backups(committed_db, settings, admin_url) == []
    decrypted, keyless = _read_from_backups(committed_db, settings, admin_url, data, old_keys, [erased])

    assert (decrypted, keyless) == (1, 0)  # the window is real: this is what the certificate discloses
    window = certificate.statement["backups"]
    assert window["keyring_backup_retention_days"] == settings.keyring_backup_retention_days
    until = datetime.fromisoformat(window["decryptable_until"].replace("Z", "+00:00"))
    assert until - certificate.erased_at == timedelta(days=settings.keyring_backup_retention_days)
    # The keyring backup that can still read the patron expires no later than the certificate says.
    assert old_keys.started_at + timedelta(days=settings.keyring_backup_retention_days) <= until
