"""The worker's backup duties: daily backups of the data and of the keyring, a daily drill, retention,
and the operators' alert when a drill fails."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from bookwarden.backup import drill as drills
from bookwarden.backup import offboarding, service
from bookwarden.backup.models import BackupDrill, BackupKind
from bookwarden.core.config import get_settings
from bookwarden.db.server import admin_url
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.notify.delivery import send_to_operators

DAILY = timedelta(days=1)
HOURLY = timedelta(hours=1)
OFFBOARDING_JOB = "backup.offboarding"
PLATFORM_JOB, KEYRING_JOB, DRILL_JOB, RETENTION_JOB = (
    "backup.platform",
    "backup.keyring",
    "backup.drill",
    "backup.retention",
)


@handler(PLATFORM_JOB)
def _platform_backup(db: Database, payload: dict[str, Any]) -> None:
    settings = get_settings()
    service.take_backup(db, settings, admin_url(settings), BackupKind.PLATFORM)


@handler(KEYRING_JOB)
def _keyring_backup(db: Database, payload: dict[str, Any]) -> None:
    settings = get_settings()
    service.take_backup(db, settings, admin_url(settings), BackupKind.KEYRING)


@handler(DRILL_JOB)
def _drill(db: Database, payload: dict[str, Any]) -> None:
    settings = get_settings()
    drills.drill(db, settings, admin_url(settings))


@handler(RETENTION_JOB)
def _retention(db: Database, payload: dict[str, Any]) -> None:
    settings = get_settings()
    service.expire_backups(db, settings, admin_url(settings))


@handler(OFFBOARDING_JOB)
def _offboarding(db: Database, payload: dict[str, Any]) -> None:
    """Carry every open offboarding on: an approval taken, an export made, a grace period's end acted on,
    a run that died resumed."""
    settings = get_settings()
    offboarding.advance_all(db, settings, admin_url(settings))


@handler(drills.ALERT_JOB)
def _alert(db: Database, payload: dict[str, Any]) -> None:
    """Mail every operator address that a drill failed: which backup, which step, what it found.

    Platform mail with no personal data, sent straight over SMTP from this job (the outbox is per
    institution); the queue retries it with backoff while the server is unreachable.
    """
    addresses = get_settings().operator_alert_addresses
    if not addresses:
        return
    with platform_session(db) as session:
        found = session.get(BackupDrill, UUID(payload["drill_id"]))
    lines = [
        f"Restore drill {found.id} of backup {found.backup_id} failed at {found.finished_at}.",
        "",
        found.failure or "",
        "",
        "Steps:",
    ]
    lines += [f"  {'ok  ' if s['ok'] else 'FAIL'} {s['step']}: {s['detail']}" for s in found.steps]
    lines += ["", "See `bookwarden backup drills` and docs/backups.md."]
    subject = f"Bookwarden: restore drill FAILED for backup {found.backup_id}"
    send_to_operators(addresses, subject, "\n".join(lines), f"drill-{found.id}")


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        for name in (PLATFORM_JOB, KEYRING_JOB, DRILL_JOB, RETENTION_JOB):
            schedule(session, name, name, DAILY)
        schedule(session, OFFBOARDING_JOB, OFFBOARDING_JOB, HOURLY)
