"""Reading who holds what: the permissions an account's roles give, and a role's own.

Below both the role service (which changes roles and queues entitlement notices) and the notices
(which ask how powerful an account or role is, to decide whether a notice may be muted), so neither
imports the other to read.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select

from bookwarden.access.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.access.roles.models import AccountRole, Role, RolePermission
from bookwarden.db.session import TenantSession


def account_permissions(session: TenantSession, account_id: UUID) -> frozenset[Permission]:
    """Everything the account's roles allow: the union of built-in and custom role permissions."""
    granted: set[Permission] = set()
    rows = session.execute(
        select(AccountRole.builtin_role, RolePermission.permission)
        .outerjoin(
            RolePermission,
            (RolePermission.tenant_id == AccountRole.tenant_id)
            & (RolePermission.role_id == AccountRole.custom_role_id),
        )
        .where(AccountRole.tenant_id == session.tenant_id, AccountRole.account_id == account_id)
    )
    for builtin, permission in rows:
        if builtin:
            granted |= BUILTIN_PERMISSIONS[BuiltinRole(builtin)]
        elif permission:
            granted.add(Permission(permission))
    return frozenset(granted)


def role_permissions(session: TenantSession, role: str) -> set[Permission]:
    """The permissions a role name gives: a built-in role's catalogue, or a custom role's rows."""
    if role in {r.value for r in BuiltinRole}:
        return set(BUILTIN_PERMISSIONS[BuiltinRole(role)])
    names = session.scalars(
        select(RolePermission.permission)
        .join(Role, (Role.tenant_id == RolePermission.tenant_id) & (Role.id == RolePermission.role_id))
        .where(Role.tenant_id == session.tenant_id, Role.name == role)
    )
    known = {p.value for p in Permission}
    return {Permission(n) for n in names if n in known}
