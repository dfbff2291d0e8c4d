"""Roles: custom roles with explicit permissions, assignment and revocation of roles.

Each change checks the caller's permission, refuses what segregation of duties forbids, and
queues the entitlement-change notice and records the audit event in the same transaction: no
caller can forget any of them.

How powerful a role is comes from its permissions (access/power.py), never its name. A role whose
permissions make its holder privileged is granted only under a second person's approval
(SensitiveAction.GRANT_ADMIN_ROLE), and a custom role is created, or its permissions changed, so that
it is privileged only under one too (SensitiveAction.DEFINE_ADMIN_ROLE): otherwise one administrator
could define a role of their own with every power and hand it to an account they also control.
Both kinds are declared in identity/approvals.py; `grant_or_ask`, `create_or_ask` and `change_or_ask`
carry out an ordinary change at once and ask for a privileged one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import delete, select

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.access.power import power_class, privileging
from bookwarden.access.roles import sod
from bookwarden.access.roles.models import AccountRole, Role, RolePermission
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.access.roles.reads import held_role_permissions
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, InvalidInput, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import (
    BUILTIN_PERMISSIONS,
    TENANT_PERMISSIONS,
    BuiltinRole,
    Permission,
)
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.identity import sessions
from bookwarden.identity.models import Account

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")

# -- defining custom roles -------------------------------------------------------------------


def create_role(
    session: TenantSession,
    actor: Principal,
    name: str,
    permissions: set[Permission],
    description: str = "",
    *,
    approval: ApprovalRequest | None = None,
) -> Role:
    """A custom role holding exactly `permissions`; a privileged one only under an approved request."""
    authorize(actor, Permission.ROLES_MANAGE)
    check_new_role(session, name, permissions)
    if power_class(permissions).privileged:
        params = definition_params(name, permissions, description, replaces=None)
        what = f"creating role {name}, {_why(permissions)}"
        require_approval(approval, SensitiveAction.DEFINE_ADMIN_ROLE, params, what)
    role = Role(tenant_id=session.tenant_id, id=uuid.uuid4(), name=name, description=description)
    session.add(role)
    session.flush()
    _set_permissions(session, role, permissions)
    details = {"name": name, "permissions": sorted(permissions), "approval_id": _approval_id(approval)}
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


def set_role_permissions(
    session: TenantSession,
    actor: Principal,
    name: str,
    permissions: set[Permission],
    *,
    approval: ApprovalRequest | None = None,
) -> Role:
    """Replace a custom role's permissions; privileged ones only under an approved request for exactly this change."""
    authorize(actor, Permission.ROLES_MANAGE)
    role = custom_role(session, name)
    before = role_permissions(session, role)
    check_role_change(session, role, permissions)
    if power_class(permissions).privileged:
        params = definition_params(name, permissions, role.description, replaces=before)
        what = f"changing role {name}, {_why(permissions)}"
        require_approval(approval, SensitiveAction.DEFINE_ADMIN_ROLE, params, what)
    _set_permissions(session, role, permissions)
    added, removed = sorted(permissions - before), sorted(before - permissions)
    details = {
        "name": name,
        "fields": ["permissions"],
        "added": added,
        "removed": removed,
        "approval_id": _approval_id(approval),
    }
    record(session, Action.ROLE_CHANGED, ("role", role.id), details=details)
    if permissions - before:
        for holder in _holders(session, role):
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
        # The role as it is now and what changed: a change to a role that is, or was, administrative is never muted.
        role=name,
        permissions=permissions ^ before,
    )
    return role


def create_or_ask(
    session: TenantSession, actor: Principal, name: str, permissions: set[Permission], description: str = ""
) -> Role | ApprovalRequest:
    """Create an ordinary role at once; ask for a privileged one (created when another holder of roles.manage
    approves)."""
    authorize(actor, Permission.ROLES_MANAGE)
    if power_class(permissions).privileged:
        params = definition_params(name, permissions, description, replaces=None)
        return approvals.ask(session, actor, SensitiveAction.DEFINE_ADMIN_ROLE, params)
    return create_role(session, actor, name, permissions, description)


def change_or_ask(
    session: TenantSession, actor: Principal, name: str, permissions: set[Permission]
) -> Role | ApprovalRequest:
    """Change a role to ordinary permissions at once; ask for privileged ones (applied when another approves)."""
    authorize(actor, Permission.ROLES_MANAGE)
    if power_class(permissions).privileged:
        params = {"role": name, "permissions": sorted(p.value for p in permissions)}
        return approvals.ask(session, actor, SensitiveAction.DEFINE_ADMIN_ROLE, params)
    return set_role_permissions(session, actor, name, permissions)


def definition_params(
    name: str, permissions: Iterable[Permission], description: str, *, replaces: Iterable[Permission] | None
) -> dict:
    """What a request to define a privileged role binds: the role, its permissions, and the permissions it
    replaces (None: a new role, refused if one of that name exists by then). Applied only while the role
    still holds `replaces`."""
    return {
        "role": name,
        "permissions": sorted(p.value for p in permissions),
        "description": description,
        "replaces": None if replaces is None else sorted(p.value for p in replaces),
    }


def check_new_role(session: TenantSession, name: str, permissions: set[Permission]) -> None:
    """Refuse, before anything is stored or asked, a role that cannot be created as asked."""
    if not ROLE_NAME.match(name):
        raise InvalidInput(f'role name "{name}" must be 2-64 of a-z, 0-9 and "_", starting with a letter')
    if name in {r.value for r in BuiltinRole}:
        raise Conflict(f'"{name}" is a built-in role')
    if session.scalar(select(Role.id).where(Role.tenant_id == session.tenant_id, Role.name == name)):
        raise Conflict(f'a role named "{name}" exists already')
    _check_permissions(name, permissions)


def check_role_change(session: TenantSession, role: Role, permissions: set[Permission]) -> None:
    """Refuse a change that is not allowed, or that would leave a holder of the role breaking a separation."""
    _check_permissions(role.name, permissions)
    for holder in _holders(session, role):
        others = held_role_permissions(session, holder)
        others.pop(role.name, None)
        clashes = sod.conflicts(others, permissions)
        if clashes:
            raise SegregationOfDutiesError(
                f"role {role.name} with these permissions would leave account {holder}, which holds it, holding "
                f"them together with {_roles(clashes)}: {_described(clashes)}; nothing was changed"
            )


def _check_permissions(name: str, permissions: set[Permission]) -> None:
    outside = {p for p in permissions if p not in TENANT_PERMISSIONS}
    if outside:
        raise InvalidInput(f"platform permissions cannot be given to a tenant role: {', '.join(sorted(outside))}")
    clashes = sod.straddled(permissions)
    if clashes:
        raise SegregationOfDutiesError(
            f"role {name} cannot carry these permissions together, nobody could hold it: {_described(clashes)}"
        )


def _why(permissions: Iterable[Permission]) -> str:
    return f"which would carry administrative permissions ({', '.join(privileging(permissions))}),"


def _approval_id(approval: ApprovalRequest | None) -> UUID | None:
    return approval.id if approval is not None else None


def _holders(session: TenantSession, role: Role) -> list[UUID]:
    return list(
        session.scalars(
            select(AccountRole.account_id).where(
                AccountRole.tenant_id == session.tenant_id, AccountRole.custom_role_id == role.id
            )
        )
    )


def _set_permissions(session: TenantSession, role: Role, permissions: set[Permission]) -> None:
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


def list_roles(session: TenantSession, actor: Principal) -> list[tuple[str, bool, str, set[Permission]]]:
    """Every role of the institution as (name, built-in, description, permissions): recorded."""
    authorize(actor, Permission.ROLES_READ)
    builtin = [
        (role.value, True, "built-in", set(permissions))
        for role, permissions in BUILTIN_PERMISSIONS.items()
        if not role.is_platform
    ]
    custom = [(role.name, False, role.description, role_permissions(session, role)) for role in custom_roles(session)]
    names = [name for name, *_ in builtin + custom]
    record(session, Action.ROLE_LISTED, ("role", None), details={"names": names, "count": len(names)})
    return builtin + custom


def roles_of(session: TenantSession, actor: Principal, account_id: UUID) -> list[str]:
    """The roles an account holds, as an administrator reads them: recorded."""
    authorize(actor, Permission.ROLES_READ)
    roles = held_roles(session, _account(session, account_id).id)
    record(session, Action.ROLE_LISTED, ("account", account_id), details={"names": roles, "count": len(roles)})
    return roles


def custom_role(session: TenantSession, name: str) -> Role:
    """The institution's custom role of that name; NotFound when there is none."""
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
    """Give `role` to an account; refused when it is self-assigned, held already, or breaks a separation.

    A role whose permissions make its holder privileged (access/power.py), built-in or custom, is only
    granted under an approved maker-checker request for exactly this account, role and permissions
    (access/approvals/service.py), checked after the conflicts so a doomed request is refused at once.
    """
    authorize(actor, Permission.ROLES_ASSIGN)
    account = _account(session, account_id)
    if actor.is_person(account.id):  # through a session or one of their tokens (core/principal.py)
        raise SegregationOfDutiesError("nobody may assign roles to themselves; ask another administrator")
    permissions = check_grant(session, account.id, role)
    if power_class(permissions).privileged:
        params = grant_params(account.id, role, permissions)
        require_approval(approval, SensitiveAction.GRANT_ADMIN_ROLE, params, f"granting {role}, {_why(permissions)}")
    grant = AccountRole(tenant_id=session.tenant_id, id=uuid.uuid4(), account_id=account.id, granted_by=actor.id)
    if role in {r.value for r in BuiltinRole}:
        grant.builtin_role = role
    else:
        grant.custom_role_id = custom_role(session, role).id
    session.add(grant)
    session.flush()
    details = {"role": role, "approval_id": _approval_id(approval)}
    record(session, Action.ROLE_GRANTED, ("account", account.id), details=details)
    # More privilege: sessions from before the grant end, so the next sign-in starts a new one.
    sessions.privileges_changed(session, account.id)
    entitlement_changed(session, actor, EntitlementEvent.ROLE_GRANTED, f"account {account.id}", {"role": role})
    return grant


def grant_or_ask(
    session: TenantSession, actor: Principal, account_id: UUID, role: str
) -> AccountRole | ApprovalRequest:
    """Grant an ordinary role at once; ask for a privileged one (granted when another holder of roles.assign
    approves). Whatever would refuse the grant refuses the request now."""
    authorize(actor, Permission.ROLES_ASSIGN)
    account = _account(session, account_id)
    if power_class(grantable_permissions(session, role)).privileged:
        params = {"account_id": str(account.id), "role": role}
        return approvals.ask(session, actor, SensitiveAction.GRANT_ADMIN_ROLE, params)
    return grant_role(session, actor, account.id, role)


def grant_params(account_id: UUID, role: str, permissions: Iterable[Permission]) -> dict:
    """What a request to grant a privileged role binds: the account, the role, and the permissions it carries
    (a custom role changed since it was asked is not granted under that approval)."""
    return {"account_id": str(account_id), "role": str(role), "permissions": sorted(p.value for p in permissions)}


def grantable_permissions(session: TenantSession, role: str) -> frozenset[Permission]:
    """The permissions `role` gives in this institution; NotFound for a platform role or an unknown one."""
    if role in {r.value for r in BuiltinRole}:
        if BuiltinRole(role).is_platform:
            raise NotFound(f"no role {role} in an institution: it is a platform role")
        return BUILTIN_PERMISSIONS[BuiltinRole(role)]
    return frozenset(role_permissions(session, custom_role(session, role)))


def check_grant(session: TenantSession, account_id: UUID, role: str) -> frozenset[Permission]:
    """Refuse a grant that cannot be made (unknown role, held already, a separation broken); else the role's
    permissions."""
    permissions = grantable_permissions(session, role)
    held = held_role_permissions(session, account_id)
    if role in held:
        raise Conflict(f"the account holds {role} already")
    clashes = sod.conflicts(held, permissions)
    if clashes:
        raise SegregationOfDutiesError(
            f"{role} cannot be held together with {_roles(clashes)}, which the account has: {_described(clashes)}"
        )
    return permissions


def _roles(clashes: list[sod.Clash]) -> str:
    return ", ".join(sorted({name for clash in clashes for name in clash.held_in})) or "its own permissions"


def _described(clashes: list[sod.Clash]) -> str:
    return "; ".join(clash.describe() for clash in clashes)


def revoke_role(session: TenantSession, actor: Principal, account_id: UUID, role: str) -> None:
    authorize(actor, Permission.ROLES_ASSIGN)
    account = _account(session, account_id)
    query = select(AccountRole).where(AccountRole.tenant_id == session.tenant_id, AccountRole.account_id == account.id)
    if role in {r.value for r in BuiltinRole}:
        grant = session.scalar(query.where(AccountRole.builtin_role == role))
    else:
        grant = session.scalar(query.where(AccountRole.custom_role_id == custom_role(session, role).id))
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
