"""Roles: custom roles with explicit permissions, assignment and revocation of roles.

Each change checks the caller's permission, refuses what segregation of duties forbids, and
queues the entitlement-change notice and records the audit event in the same transaction: no
caller can forget any of them.
"""

from __future__ import annotations

import re
import uuid
from uuid import UUID

from sqlalchemy import delete, select

from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.access.authorize import authorize
from bookwarden.access.permissions import (
    ADMIN_ROLES,
    BUILTIN_PERMISSIONS,
    TENANT_PERMISSIONS,
    BuiltinRole,
    Permission,
)
from bookwarden.access.principal import Principal, PrincipalKind
from bookwarden.access.roles import sod
from bookwarden.access.roles.models import AccountRole, Role, RolePermission
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.errors import Conflict, InvalidInput, NotFound, SegregationOfDutiesError
from bookwarden.db.session import TenantSession
from bookwarden.identity import sessions
from bookwarden.identity.models import Account

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


def create_role(
    session: TenantSession, actor: Principal, name: str, permissions: set[Permission], description: str = ""
) -> Role:
    authorize(actor, Permission.ROLES_MANAGE)
    if not ROLE_NAME.match(name):
        raise InvalidInput(f'role name "{name}" must be 2-64 of a-z, 0-9 and "_", starting with a letter')
    if name in {r.value for r in BuiltinRole}:
        raise Conflict(f'"{name}" is a built-in role')
    if session.scalar(select(Role.id).where(Role.tenant_id == session.tenant_id, Role.name == name)):
        raise Conflict(f'a role named "{name}" exists already')
    role = Role(tenant_id=session.tenant_id, id=uuid.uuid4(), name=name, description=description)
    session.add(role)
    session.flush()
    _set_permissions(session, role, permissions)
    details = {"name": name, "permissions": sorted(permissions)}
    record(session, Action.ROLE_CREATED, ("role", role.id), details=details)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.ROLE_PERMISSIONS_CHANGED,
        f"role {name}",
        {"permissions": ", ".join(sorted(permissions)) or "(none)"},
        permissions=permissions,
    )
    return role


def set_role_permissions(session: TenantSession, actor: Principal, name: str, permissions: set[Permission]) -> Role:
    authorize(actor, Permission.ROLES_MANAGE)
    role = _custom_role(session, name)
    before = role_permissions(session, role)
    _set_permissions(session, role, permissions)
    added, removed = sorted(permissions - before), sorted(before - permissions)
    details = {"name": name, "fields": ["permissions"], "added": added, "removed": removed}
    record(session, Action.ROLE_CHANGED, ("role", role.id), details=details)
    if permissions - before:
        for holder in session.scalars(
            select(AccountRole.account_id).where(
                AccountRole.tenant_id == session.tenant_id, AccountRole.custom_role_id == role.id
            )
        ):
            sessions.privileges_changed(session, holder)
    entitlement_changed(
        session,
        actor,
        EntitlementEvent.ROLE_PERMISSIONS_CHANGED,
        f"role {name}",
        {
            "added": ", ".join(sorted(permissions - before)) or "(none)",
            "removed": ", ".join(sorted(before - permissions)) or "(none)",
        },
        permissions=permissions ^ before,
    )
    return role


def _set_permissions(session: TenantSession, role: Role, permissions: set[Permission]) -> None:
    outside = {p for p in permissions if p not in TENANT_PERMISSIONS}
    if outside:
        raise InvalidInput(f"platform permissions cannot be given to a tenant role: {', '.join(sorted(outside))}")
    session.execute(
        delete(RolePermission).where(RolePermission.tenant_id == session.tenant_id, RolePermission.role_id == role.id)
    )
    session.add_all(
        RolePermission(tenant_id=session.tenant_id, role_id=role.id, permission=p.value) for p in permissions
    )
    session.flush()


def role_permissions(session: TenantSession, role: Role) -> set[Permission]:
    names = session.scalars(
        select(RolePermission.permission).where(
            RolePermission.tenant_id == session.tenant_id, RolePermission.role_id == role.id
        )
    )
    return {Permission(n) for n in names}


def custom_roles(session: TenantSession) -> list[Role]:
    return list(session.scalars(select(Role).where(Role.tenant_id == session.tenant_id).order_by(Role.name)))


def list_roles(session: TenantSession) -> list[tuple[str, bool, str, set[Permission]]]:
    """Every role of the institution as (name, built-in, description, permissions): recorded."""
    builtin = [
        (role.value, True, "built-in", set(permissions))
        for role, permissions in BUILTIN_PERMISSIONS.items()
        if not role.is_platform
    ]
    custom = [(role.name, False, role.description, role_permissions(session, role)) for role in custom_roles(session)]
    names = [name for name, *_ in builtin + custom]
    record(session, Action.ROLE_LISTED, ("role", None), details={"names": names, "count": len(names)})
    return builtin + custom


def roles_of(session: TenantSession, account_id: UUID) -> list[str]:
    """The roles an account holds, as an administrator reads them: recorded."""
    roles = held_roles(session, _account(session, account_id).id)
    record(session, Action.ROLE_LISTED, ("account", account_id), details={"names": roles, "count": len(roles)})
    return roles


def _custom_role(session: TenantSession, name: str) -> Role:
    role = session.scalar(select(Role).where(Role.tenant_id == session.tenant_id, Role.name == name))
    if role is None:
        raise NotFound(f"no role {name}")
    return role


def held_roles(session: TenantSession, account_id: UUID) -> list[str]:
    """Names of every role the account holds, built-in and custom."""
    rows = session.execute(
        select(AccountRole.builtin_role, Role.name)
        .outerjoin(Role, (Role.tenant_id == AccountRole.tenant_id) & (Role.id == AccountRole.custom_role_id))
        .where(AccountRole.tenant_id == session.tenant_id, AccountRole.account_id == account_id)
    )
    return sorted(builtin or custom for builtin, custom in rows)


def grant_role(
    session: TenantSession, actor: Principal, account_id: UUID, role: str, *, approval: ApprovalRequest | None = None
) -> AccountRole:
    """Give `role` to an account; refused when it conflicts with a role held, or is self-assigned.

    An administrative role (ADMIN_ROLES) is only granted under an approved maker-checker request
    (access/approvals/service.py), checked after the conflicts so a doomed request is refused at once.
    """
    authorize(actor, Permission.ROLES_ASSIGN)
    account = _account(session, account_id)
    if actor.kind is PrincipalKind.ACCOUNT and actor.id == account.id:
        raise SegregationOfDutiesError("nobody may assign roles to themselves; ask another administrator")
    held = held_roles(session, account.id)
    if role in held:
        raise Conflict(f"the account holds {role} already")
    clashes = sod.conflicts(held, role)
    if clashes:
        pairs = "; ".join(f"{a} with {b}" for a, b in clashes)
        raise SegregationOfDutiesError(f"{role} cannot be held together with a role the account has: {pairs}")
    if role in ADMIN_ROLES:
        params = {"account_id": str(account.id), "role": str(role)}
        require_approval(approval, SensitiveAction.GRANT_ADMIN_ROLE, params, f"granting {role}")
    grant = AccountRole(tenant_id=session.tenant_id, id=uuid.uuid4(), account_id=account.id, granted_by=actor.id)
    if role in {r.value for r in BuiltinRole}:
        if BuiltinRole(role).is_platform:
            raise NotFound(f"no role {role} in an institution: it is a platform role")
        grant.builtin_role = role
    else:
        grant.custom_role_id = _custom_role(session, role).id
    session.add(grant)
    session.flush()
    details = {"role": role, "approval_id": approval.id if approval is not None else None}
    record(session, Action.ROLE_GRANTED, ("account", account.id), details=details)
    # More privilege: sessions from before the grant end, so the next sign-in starts a new one.
    sessions.privileges_changed(session, account.id)
    entitlement_changed(session, actor, EntitlementEvent.ROLE_GRANTED, f"account {account.id}", {"role": role})
    return grant


def revoke_role(session: TenantSession, actor: Principal, account_id: UUID, role: str) -> None:
    authorize(actor, Permission.ROLES_ASSIGN)
    account = _account(session, account_id)
    query = select(AccountRole).where(AccountRole.tenant_id == session.tenant_id, AccountRole.account_id == account.id)
    if role in {r.value for r in BuiltinRole}:
        grant = session.scalar(query.where(AccountRole.builtin_role == role))
    else:
        grant = session.scalar(query.where(AccountRole.custom_role_id == _custom_role(session, role).id))
    if grant is None:
        raise NotFound(f"the account does not hold {role}")
    session.delete(grant)
    session.flush()
    record(session, Action.ROLE_REVOKED, ("account", account.id), details={"role": role})
    entitlement_changed(session, actor, EntitlementEvent.ROLE_REVOKED, f"account {account.id}", {"role": role})


def _account(session: TenantSession, account_id: UUID) -> Account:
    account = session.get(Account, (session.tenant_id, account_id))
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account
