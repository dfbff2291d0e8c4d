"""Operator API: the backup catalogue and the drill history (`platform.backups.read`). No data, only
what was backed up when, how big, and what each drill found. Offboardings (`platform.tenants.offboard`):
asked, approved by another operator, cancelled, listed, their certificates read; and the institution's
download of its final export, by the expiring link mailed to its administrators (the link is the credential)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.api.deps import database, requires
from bookwarden.api.problems import responses
from bookwarden.backup import drill as drills
from bookwarden.backup import offboarding, service
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, platform_session

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422))
READ = Depends(requires(Permission.PLATFORM_BACKUPS_READ))
OFFBOARD = Depends(requires(Permission.PLATFORM_TENANTS_OFFBOARD))


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


class OffboardingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_days: int | None = Field(default=None, ge=0, le=3650, description="default: the platform's setting")
    wipe_method: str | None = Field(default=None, description="nist-800-88-clear or dod-5220.22-m")


class OffboardingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    institution_id: UUID
    institution_slug: str
    state: str
    wipe_method: str
    grace_days: int
    approval_id: UUID
    requested_at: datetime
    approved_at: datetime | None
    link_expires_at: datetime | None
    grace_ends_at: datetime | None
    cancelled_at: datetime | None
    finished_at: datetime | None


@router.post(
    "/operator/tenants/{tenant_id}/offboarding",
    status_code=202,
    response_model=OffboardingOut,
    tags=["operator: offboarding"],
    responses=responses(404, 409),
)
def ask_offboarding(
    tenant_id: UUID,
    body: OffboardingIn,
    request: Request,
    principal: Principal = OFFBOARD,
    db: Database = Depends(database),
):
    """Ask for an institution's offboarding; its administrators are mailed. Another operator approves."""
    return offboarding.request_offboarding(
        db,
        principal,
        request.app.state.settings,
        tenant_id,
        grace_days=body.grace_days,
        wipe_method=body.wipe_method,
    )


@router.post(
    "/operator/offboardings/{offboarding_id}/approve",
    response_model=OffboardingOut,
    tags=["operator: offboarding"],
    responses=responses(404, 409),
)
def approve_offboarding(offboarding_id: UUID, principal: Principal = OFFBOARD, db: Database = Depends(database)):
    """Approve another operator's request (never one's own, through any credential); the worker carries it on."""
    return offboarding.approve_offboarding(db, principal, offboarding_id)


@router.post(
    "/operator/offboardings/{offboarding_id}/cancel",
    response_model=OffboardingOut,
    tags=["operator: offboarding"],
    responses=responses(404, 409),
)
def cancel_offboarding(
    offboarding_id: UUID, request: Request, principal: Principal = OFFBOARD, db: Database = Depends(database)
):
    """Cancel before the destruction starts: the export is wiped and the institution resumed."""
    return offboarding.cancel_offboarding(db, principal, request.app.state.settings, offboarding_id)


@router.get("/operator/offboardings", response_model=list[OffboardingOut], tags=["operator: offboarding"])
def list_offboardings(principal: Principal = OFFBOARD, db: Database = Depends(database)):
    """Every offboarding, newest first: its state, method and dates."""
    with platform_session(db) as session:
        return [OffboardingOut.model_validate(r) for r in offboarding.list_offboardings(session, principal)]


@router.get(
    "/operator/offboardings/{offboarding_id}/certificate",
    tags=["operator: offboarding"],
    responses={200: {"content": {"application/json": {}}}, **responses(404, 409)},
)
def read_offboarding_certificate(
    offboarding_id: UUID, principal: Principal = OFFBOARD, db: Database = Depends(database)
):
    """The signed certificate of destruction, byte for byte (verify it offline: `bookwarden certificate verify`)."""
    with platform_session(db) as session:
        document = offboarding.read_certificate(session, principal, offboarding_id)
    headers = {"Content-Disposition": f'attachment; filename="destruction-certificate-{offboarding_id}.json"'}
    return Response(document, media_type="application/json", headers=headers)


@router.get(
    "/offboarding/export/{token}",
    response_class=StreamingResponse,
    tags=["offboarding"],
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
)
def download_offboarding_export(
    token: Annotated[str, Path(max_length=400, description="the link's token")],
    request: Request,
    db: Database = Depends(database),
):
    """An offboarded institution's final export, by the link mailed to its administrators (the link is the
    credential, until it expires or the export is destroyed); every download is recorded."""
    row, path = offboarding.open_export(db, request.app.state.settings, token)
    headers = {
        "Content-Disposition": f'attachment; filename="{row.institution_slug}-final-export.zip"',
        "Content-Length": str(path.stat().st_size),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(_file_blocks(path), media_type="application/zip", headers=headers)


def _file_blocks(path):
    with path.open("rb") as source:
        while block := source.read(1024 * 1024):
            yield block
