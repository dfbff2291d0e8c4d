"""The backup area's sensitive action: offboarding an institution (backup/offboarding.py).

Two operators holding platform.tenants.offboard: one asks, another approves. Approving carries nothing out
by itself: the offboarding's steps read the approval from the institution's queue and start from it.
"""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.backup.offboarding import checked_params
from bookwarden.core.permissions import Permission

register(ApprovalKind(SensitiveAction.OFFBOARD_TENANT, Permission.PLATFORM_TENANTS_OFFBOARD, checked_params))
