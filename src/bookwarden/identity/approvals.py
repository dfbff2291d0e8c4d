"""Role changes' sensitive actions (identity/roles.py): granting a role, and defining a custom role, that
carries administrative permissions (access/power.py), built-in or custom alike.

Each check refuses now what would make the change fail when approved (unknown account or role, a role
held already, a separation of duties broken, a role that is not privileged and needs no approval), and
returns exactly what gets bound: the role's permissions as they are when asked, so a role changed
meanwhile is not granted, nor a definition applied over a role that changed, under this approval.
"""

from __future__ import annotations

from uuid import UUID

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.access.power import power_class
from bookwarden.core.errors import Conflict, InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.identity import roles
from bookwarden.identity.accounts import service as accounts


def _checked_grant(session: TenantSession, params: dict) -> dict:
    role = params.get("role")
    if not isinstance(role, str):
        raise InvalidInput("role: name the role to grant")
    account = accounts.get_account(session, _uuid(params.get("account_id"), "account_id"))
    permissions = roles.check_grant(session, account.id, role)
    if not power_class(permissions).privileged:
        raise InvalidInput(
            f"role: {role} carries no administrative permission and needs no approval; grant it directly"
        )
    return roles.grant_params(account.id, role, permissions)


def _grant(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    roles.grant_role(session, approver, UUID(request.params["account_id"]), request.params["role"], approval=request)


def _checked_definition(session: TenantSession, params: dict) -> dict:
    name = params.get("role")
    if not isinstance(name, str):
        raise InvalidInput("role: name the role to define")
    permissions = _permissions(params.get("permissions"))
    if not power_class(permissions).privileged:
        raise InvalidInput(
            f"permissions: role {name} would carry no administrative permission and needs no approval; "
            "create or change it directly"
        )
    if "replaces" in params and params["replaces"] is None:  # a new role
        description = params.get("description", "")
        if not isinstance(description, str):
            raise InvalidInput("description: text")
        roles.check_new_role(session, name, permissions)
        return roles.definition_params(name, permissions, description, replaces=None)
    # A change of the role as it is now (what it replaces is read here, and bound).
    existing = roles.custom_role(session, name)
    before = roles.role_permissions(session, existing)
    if "replaces" in params and params["replaces"] != sorted(p.value for p in before):
        raise Conflict(f"role {name} has changed since: ask again from its permissions now")
    if before == permissions:
        raise Conflict(f"role {name} carries these permissions already: nothing to approve")
    roles.check_role_change(session, existing, permissions)
    return roles.definition_params(name, permissions, existing.description, replaces=before)


def _define(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    params = request.params
    permissions = {Permission(p) for p in params["permissions"]}
    if params["replaces"] is None:
        roles.create_role(session, approver, params["role"], permissions, params["description"], approval=request)
    else:
        roles.set_role_permissions(session, approver, params["role"], permissions, approval=request)


def _permissions(names: object) -> set[Permission]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInput("permissions: a list of permission names")
    known = {p.value for p in Permission}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidInput(f"permissions: no permission {', '.join(unknown)}")
    return {Permission(n) for n in names}


def _uuid(value: object, field: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{field}: not an id") from None


register(
    ApprovalKind(SensitiveAction.GRANT_ADMIN_ROLE, Permission.ROLES_ASSIGN, _checked_grant, _grant),
    ApprovalKind(SensitiveAction.DEFINE_ADMIN_ROLE, Permission.ROLES_MANAGE, _checked_definition, _define),
)
