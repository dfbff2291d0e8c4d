"""Data-subject requests' sensitive action: a staff-initiated erasure request, approved by a second
privacy officer (approving moves the request to approved)."""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.core.permissions import Permission
from bookwarden.privacy.requests import service as requests

register(
    ApprovalKind(
        SensitiveAction.APPROVE_ERASURE_REQUEST,
        Permission.PRIVACY_ERASURE_APPROVE,
        requests.checked_erasure_params,
        requests.approved_by_checker,
    )
)
