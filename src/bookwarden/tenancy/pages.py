"""Institutions in the operator console: list them, register one, suspend and resume. Operators manage
institutions and reach none of their data here."""

from __future__ import annotations

from uuid import UUID

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import platform_session
from bookwarden.tenancy import service
from bookwarden.tenancy.routes import TenantCreate, TenantSuspend
from bookwarden.web.consoles import Console, entry, page, read_form
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
MANAGE = Depends(requires(Permission.PLATFORM_TENANTS_MANAGE))
HOME = "/operator/institutions"
entry(
    Console.OPERATOR,
    "Institutions",
    "Institutions",
    HOME,
    Permission.PLATFORM_TENANTS_MANAGE,
    "register, suspend and resume institutions",
)


@router.get(HOME)
def institutions(request: Request, principal: Principal = MANAGE):
    with platform_session(request.app.state.db) as session:
        found = service.show_tenants(session, principal)
    return page(request, Console.OPERATOR, "console/institutions.html", title="Institutions", rows=found)


@router.post(HOME)
def register_institution(request: Request, principal: Principal = MANAGE):
    body = read_form(request, TenantCreate)
    db = request.app.state.db
    with platform_session(db) as session:
        service.register_institution(
            session, principal, db.keyring, request.app.state.settings.resolved_home, body.slug, body.name
        )
    return RedirectResponse(HOME, status_code=303)


@router.post(HOME + "/{tenant_id}/suspend")
def suspend(request: Request, tenant_id: UUID, principal: Principal = MANAGE):
    body = read_form(request, TenantSuspend)
    with platform_session(request.app.state.db) as session:
        service.suspend_tenant(session, principal, tenant_id, body.reason)
    return RedirectResponse(HOME, status_code=303)


@router.post(HOME + "/{tenant_id}/resume")
def resume(request: Request, tenant_id: UUID, principal: Principal = MANAGE):
    with platform_session(request.app.state.db) as session:
        service.resume_tenant(session, principal, tenant_id)
    return RedirectResponse(HOME, status_code=303)
