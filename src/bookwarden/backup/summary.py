"""Backups and drills, for the security report and the live evidence: what was taken, what was drilled,
how recent the newest complete backup of each kind is. Platform tables (a platform session)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select

from bookwarden.backup.models import Backup, BackupDrill, BackupKind, BackupStatus, DrillOutcome

# Every backup job runs daily (backup/jobs.py); a newest backup older than this missed its schedule.
SCHEDULE = {BackupKind.PLATFORM: timedelta(days=1), BackupKind.KEYRING: timedelta(days=1)}
GRACE = timedelta(hours=6)  # a day's run may start late and take a while


def monthly(session, since: datetime, until: datetime, institution_id: UUID | None = None) -> dict[str, object]:
    """Backups taken and drills run in [since, until): per kind and status; the drills' outcomes.

    For an institution: the platform and keyring backups (which hold every institution's data) and its own
    tenant backups, never another institution's."""
    query = select(Backup).where(Backup.started_at >= since, Backup.started_at < until)
    if institution_id is not None:
        query = query.where(or_(Backup.kind != BackupKind.TENANT, Backup.institution_id == institution_id))
    backups = list(session.scalars(query))
    drills = list(
        session.scalars(
            select(BackupDrill)
            .where(BackupDrill.started_at >= since, BackupDrill.started_at < until)
            .order_by(BackupDrill.started_at)
        )
    )
    by_kind: dict[str, dict[str, int]] = {}
    for backup in backups:
        counts = by_kind.setdefault(str(backup.kind), {})
        counts[str(backup.status)] = counts.get(str(backup.status), 0) + 1
    return {
        "backups": dict(sorted(by_kind.items())),
        "drills_passed": sum(1 for d in drills if d.outcome == DrillOutcome.PASSED),
        "drills_failed": sum(1 for d in drills if d.outcome == DrillOutcome.FAILED),
        "drills": [
            {"started_at": d.started_at.isoformat(), "outcome": str(d.outcome), "failure": d.failure} for d in drills
        ],
    }


def last_drill(session) -> BackupDrill | None:
    """The newest finished drill."""
    return session.scalars(
        select(BackupDrill).where(BackupDrill.outcome != DrillOutcome.RUNNING).order_by(BackupDrill.started_at.desc())
    ).first()


def newest_complete(session, kind: BackupKind) -> Backup | None:
    return session.scalars(
        select(Backup)
        .where(Backup.kind == kind, Backup.status == BackupStatus.COMPLETE)
        .order_by(Backup.started_at.desc())
        .limit(1)
    ).first()


def late_backups(session, now: datetime) -> list[str]:
    """Each scheduled kind whose newest complete backup is older than its schedule allows (or missing)."""
    late = []
    for kind, every in SCHEDULE.items():
        newest = newest_complete(session, kind)
        if newest is None:
            late.append(f"no complete {kind.value} backup")
        elif newest.started_at < now - every - GRACE:
            late.append(f"the newest complete {kind.value} backup is from {newest.started_at:%Y-%m-%d %H:%M} UTC")
    return late
