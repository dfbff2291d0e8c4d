"""Reading who holds what: the permissions an account's roles give, and a role's own.

Below both the role service (which changes roles and queues entitlement notices) and the notices
(which ask how powerful an account or role is, to decide whether a notice may be muted), so neither
imports the other to read. How powerful is decided by access/power.py from these permissions.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select

from bookwarden.access.power import power_class
from bookwarden.access.roles.models import AccountRole, Role, RolePermission
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
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


def held_role_permissions(session: TenantSession, account_id: UUID) -> dict[str, frozenset[Permission]]:
    """Each role the account holds, by name, with the permissions it gives (a custom role's may be none)."""
    rows = session.execute(
        select(AccountRole.builtin_role, Role.name, RolePermission.permission)
        .outerjoin(Role, (Role.tenant_id == AccountRole.tenant_id) & (Role.id == AccountRole.custom_role_id))
        .outerjoin(
            RolePermission,
            (RolePermission.tenant_id == AccountRole.tenant_id)
            & (RolePermission.role_id == AccountRole.custom_role_id),
        )
        .where(AccountRole.tenant_id == session.tenant_id, AccountRole.account_id == account_id)
    )
    known = {p.value for p in Permission}
    held: dict[str, set[Permission]] = {}
    for builtin, custom, permission in rows:
        if builtin:
            held[builtin] = set(BUILTIN_PERMISSIONS[BuiltinRole(builtin)])
            continue
        granted = held.setdefault(custom, set())
        if permission in known:
            granted.add(Permission(permission))
    return {name: frozenset(granted) for name, granted in held.items()}


def privileged_roles(session: TenantSession, account_id: UUID) -> list[str]:
    """The roles that make the account privileged (access/power.py): each one alone requires a second factor."""
    held = held_role_permissions(session, account_id)
    return sorted(name for name, granted in held.items() if power_class(granted).privileged)


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
