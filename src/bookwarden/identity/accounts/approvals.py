"""Accounts' sensitive actions: granting an administrative role, changing a password policy."""

from __future__ import annotations

from uuid import UUID

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.access.permissions import ADMIN_ROLES, Permission
from bookwarden.access.principal import Principal
from bookwarden.core.errors import InvalidInput
from bookwarden.db.session import TenantSession
from bookwarden.identity import roles
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.passwords import PasswordPolicy, RoleClass

POLICY_SETTINGS = ("min_length", "max_length", "history", "expiry_days")


def _checked_grant(session: TenantSession, params: dict) -> dict:
    if params.get("role") not in {r.value for r in ADMIN_ROLES}:
        raise InvalidInput(f"role: only {', '.join(sorted(ADMIN_ROLES))} need an approval; grant others directly")
    account = accounts.get_account(session, UUID(str(params["account_id"])))
    return {"account_id": str(account.id), "role": str(params["role"])}


def _grant(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    roles.grant_role(session, approver, UUID(request.params["account_id"]), request.params["role"], approval=request)


def _checked_policy(session: TenantSession, params: dict) -> dict:
    role_class = RoleClass(params["role_class"])
    settings = {k: params.get(k) for k in POLICY_SETTINGS if k in params}
    policy = PasswordPolicy.for_role(role_class, **settings)  # a setting below a floor is refused now
    return {
        "role_class": role_class.value,
        "min_length": policy.min_length,
        "max_length": policy.max_length,
        "history": policy.history,
        "expiry_days": policy.expiry_days,
    }


def _set_policy(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    params = dict(request.params)
    role_class = RoleClass(params.pop("role_class"))
    accounts.set_password_policy(session, approver, role_class, approval=request, **params)


register(
    ApprovalKind(SensitiveAction.GRANT_ADMIN_ROLE, Permission.ROLES_ASSIGN, _checked_grant, _grant),
    ApprovalKind(SensitiveAction.CHANGE_PASSWORD_POLICY, Permission.POLICY_MANAGE, _checked_policy, _set_policy),
)
