"""Accounts' sensitive actions: changing a password policy. (Granting and defining administrative roles:
identity/approvals.py, next to the role service.)"""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.passwords import PasswordPolicy, RoleClass

POLICY_SETTINGS = ("min_length", "max_length", "history", "expiry_days")


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
    ApprovalKind(SensitiveAction.CHANGE_PASSWORD_POLICY, Permission.POLICY_MANAGE, _checked_policy, _set_policy),
)
