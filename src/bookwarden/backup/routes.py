"""Operator API: the backup catalogue and the drill history (`platform.backups.read`). No data, only
what was backed up when, how big, and what each drill found."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from bookwarden.api.deps import database, requires
from bookwarden.api.problems import responses
from bookwarden.backup import drill as drills
from bookwarden.backup import service
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, platform_session

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422))
READ = Depends(requires(Permission.PLATFORM_BACKUPS_READ))


class BackupOut(BaseModel):
    id: UUID
    kind: str
    institution_id: UUID | None
    status: str
    started_at: datetime
    finished_at: datetime | None
    stored_bytes: int | None
    chunks: int | None
    removed_at: datetime | None


class DrillOut(BaseModel):
    id: UUID
    backup_id: UUID
    keyring_backup_id: UUID | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    failure: str | None
    steps: list[dict[str, Any]]


@router.get("/operator/backups", response_model=list[BackupOut], tags=["operator: backups"])
def list_backups(principal: Principal = READ, db: Database = Depends(database)):
    """The backup catalogue, newest first (the folders are left out: they are the console's business)."""
    with platform_session(db) as session:
        return [BackupOut.model_validate(b, from_attributes=True) for b in service.list_backups(session, principal)]


@router.get("/operator/backups/drills", response_model=list[DrillOut], tags=["operator: backups"])
def list_drills(principal: Principal = READ, db: Database = Depends(database)):
    """Restore-drill history, newest first: each step, what it found, and why a failed drill failed."""
    with platform_session(db) as session:
        return [DrillOut.model_validate(d, from_attributes=True) for d in drills.list_drills(session, principal)]
