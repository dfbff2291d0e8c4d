"""Operator API: tenants. Operator tokens manage institutions and reach none of their data."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.api.deps import database, requires
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database, platform_session
from bookwarden.tenancy import service
from bookwarden.tenancy.models import TenantStatus

router = APIRouter(prefix="/api/v1/operator/tenants", tags=["operator: tenants"], responses=responses(401, 403, 422))
MANAGE = Depends(requires(Permission.PLATFORM_TENANTS_MANAGE))


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: line(200)


class TenantSuspend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: lines(500)


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    slug: str
    name: str
    status: TenantStatus
    suspended_reason: str | None
    created_at: datetime
    suspended_at: datetime | None


@router.post("", status_code=201, response_model=TenantOut, responses=responses(409))
def create_tenant(
    body: TenantCreate, request: Request, principal: Principal = MANAGE, db: Database = Depends(database)
):
    with platform_session(db) as session:
        return service.register_institution(
            session, principal, db.keyring, request.app.state.settings.resolved_home, body.slug, body.name
        )


@router.get("", response_model=list[TenantOut])
def list_tenants(principal: Principal = MANAGE, db: Database = Depends(database)):
    with platform_session(db) as session:
        return service.show_tenants(session, principal)


@router.get("/{tenant_id}", response_model=TenantOut, responses=responses(404))
def read_tenant(tenant_id: UUID, principal: Principal = MANAGE, db: Database = Depends(database)):
    with platform_session(db) as session:
        return service.view_tenant(session, principal, tenant_id)


@router.post("/{tenant_id}/suspend", response_model=TenantOut, responses=responses(404))
def suspend_tenant(
    tenant_id: UUID, body: TenantSuspend, principal: Principal = MANAGE, db: Database = Depends(database)
):
    with platform_session(db) as session:
        return service.suspend_tenant(session, principal, tenant_id, body.reason)


@router.post("/{tenant_id}/resume", response_model=TenantOut, responses=responses(404))
def resume_tenant(tenant_id: UUID, principal: Principal = MANAGE, db: Database = Depends(database)):
    with platform_session(db) as session:
        return service.resume_tenant(session, principal, tenant_id)
