"""Institutional sign-on's sensitive actions: whoever controls the IdP decides who signs in as whom."""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.core.permissions import Permission
from bookwarden.db.session import TenantSession
from bookwarden.identity.saml import config


def _checked_change(session: TenantSession, params: dict) -> dict:
    return config.checked_params(session, SensitiveAction.CONFIGURE_SSO, params)


def _checked_removal(session: TenantSession, params: dict) -> dict:
    return config.checked_params(session, SensitiveAction.REMOVE_SSO, params)


register(
    ApprovalKind(SensitiveAction.CONFIGURE_SSO, Permission.SSO_MANAGE, _checked_change, config.carry_out),
    ApprovalKind(SensitiveAction.REMOVE_SSO, Permission.SSO_MANAGE, _checked_removal, config.carry_out),
)
