"""Tenant use cases. Tenants are platform rows; their keys go to the keyring.

What an operator does to tenants is recorded in the platform chain (the caller's platform
session): created, listed, viewed, suspended, resumed. `get_tenant` and `list_tenants` are the
plain look-ups every request and job makes, and record nothing.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, InvalidInput, NotFound, TenantSuspended
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.crypto.keyring import Keyring
from bookwarden.tenancy.models import Tenant, TenantStatus

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


def tenant_dir(home: Path, tenant_id: UUID) -> Path:
    """The tenant's file area, created mode 0700 (and its parent too) whatever the umask."""
    root = home / "tenants"
    path = root / str(tenant_id)
    for folder in (home, root, path):
        folder.mkdir(mode=0o700, exist_ok=True)
    for folder in (root, path):
        os.chmod(folder, 0o700)
    return path


def register_institution(
    session: Session, actor: Principal, keyring: Keyring, home: Path, slug: str, name: str
) -> Tenant:
    """An operator creates an institution (HTTP and console). `create_tenant` is what it does, also run by
    the demo's seed and by the tests' fixtures, which need no operator."""
    authorize(actor, Permission.PLATFORM_TENANTS_MANAGE)
    return create_tenant(session, keyring, home, slug, name)


def create_tenant(session: Session, keyring: Keyring, home: Path, slug: str, name: str) -> Tenant:
    if not SLUG.match(slug):
        raise InvalidInput(
            f'slug "{slug}" must be 2-63 characters of a-z, 0-9 and "-", starting with a letter or digit'
        )
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters")
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f'a tenant with slug "{slug}" exists already')
    tenant = Tenant(slug=slug, name=name, status=TenantStatus.ACTIVE)
    session.add(tenant)
    session.flush()
    keyring.create_tenant(tenant.id)
    tenant_dir(home, tenant.id)
    record(session, Action.TENANT_CREATED, ("tenant", tenant.id), details={"slug": slug})
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.slug)))


def show_tenants(session: Session, actor: Principal) -> list[Tenant]:
    """Every tenant, as an operator lists them: recorded."""
    authorize(actor, Permission.PLATFORM_TENANTS_MANAGE)
    tenants = list_tenants(session)
    ids = [tenant.id for tenant in tenants]
    record(session, Action.TENANT_LISTED, ("tenant", None), details={"ids": ids, "count": len(ids)})
    return tenants


def view_tenant(session: Session, actor: Principal, ref: UUID | str) -> Tenant:
    """One tenant, as an operator reads it: recorded."""
    authorize(actor, Permission.PLATFORM_TENANTS_MANAGE)
    tenant = get_tenant(session, ref)
    record(session, Action.TENANT_VIEWED, ("tenant", tenant.id))
    return tenant


def get_tenant(session: Session, ref: UUID | str) -> Tenant:
    """By id or by slug (the CLI accepts either)."""
    if isinstance(ref, UUID):
        tenant = session.get(Tenant, ref)
    else:
        try:
            tenant = session.get(Tenant, UUID(ref))
        except ValueError:
            tenant = session.scalar(select(Tenant).where(Tenant.slug == ref))
    if tenant is None:
        raise NotFound(f"no tenant {ref}")
    return tenant


def suspend_tenant(session: Session, actor: Principal, ref: UUID | str, reason: str) -> Tenant:
    authorize(actor, Permission.PLATFORM_TENANTS_MANAGE)
    tenant = get_tenant(session, ref)
    if not reason.strip():
        raise InvalidInput("a reason is required to suspend a tenant")
    tenant.status = TenantStatus.SUSPENDED
    tenant.suspended_reason = reason.strip()[:500]
    tenant.suspended_at = datetime.now(UTC)
    # The reason is free text an operator typed (it may name people): kept on the tenant, not in the trail.
    record(session, Action.TENANT_SUSPENDED, ("tenant", tenant.id))
    return tenant


def resume_tenant(session: Session, actor: Principal, ref: UUID | str) -> Tenant:
    authorize(actor, Permission.PLATFORM_TENANTS_MANAGE)
    tenant = get_tenant(session, ref)
    tenant.status = TenantStatus.ACTIVE
    tenant.suspended_reason = None
    tenant.suspended_at = None
    record(session, Action.TENANT_RESUMED, ("tenant", tenant.id))
    return tenant


def institution_name(session: Session) -> str:
    """The institution's name, as the mail it sends shows it (the session's own institution)."""
    return session.get(Tenant, session.tenant_id).name


def ensure_active(session: Session, tenant_id: UUID) -> Tenant:
    tenant = get_tenant(session, tenant_id)
    if tenant.status is TenantStatus.SUSPENDED:
        raise TenantSuspended(
            f'institution "{tenant.slug}" is suspended ({tenant.suspended_reason}); every request is refused '
            "until the platform operator resumes it"
        )
    return tenant
