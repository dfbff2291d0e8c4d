"""Retention's sensitive action: how long a category of personal data is kept, that is, when it is destroyed."""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.privacy.retention import service as retention


def _checked(session: TenantSession, params: dict) -> dict:
    return retention.checked_params(params)


def _set_period(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    params = request.params
    retention.set_period(session, approver, params["category"], params["keep_days"], approval=request)


register(
    ApprovalKind(SensitiveAction.CHANGE_RETENTION_POLICY, Permission.PRIVACY_RETENTION_MANAGE, _checked, _set_period)
)
