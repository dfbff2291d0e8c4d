"""Subject rights' sensitive action: one patron's access package outside a data-subject request. Approving
carries nothing out; it lets the one who asked build the package once, within a day, and its link be
downloaded once (privacy/subjects/export.py `build_for_staff`)."""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.core.permissions import Permission
from bookwarden.privacy.subjects import export

register(ApprovalKind(SensitiveAction.EXPORT_SUBJECT, Permission.PRIVACY_REQUESTS_HANDLE, export.checked_params))
