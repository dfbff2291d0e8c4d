"""The library's sensitive action: every patron, decrypted, in one file. Approving carries nothing
out; it lets the asker download once, within a day (library/export.py)."""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.access.permissions import Permission
from bookwarden.core.errors import InvalidInput
from bookwarden.db.session import TenantSession

EXPORT_FORMATS = ("jsonl", "csv")


def _checked_export(session: TenantSession, params: dict) -> dict:
    if params.get("format") not in EXPORT_FORMATS:
        raise InvalidInput(f"format: one of {', '.join(EXPORT_FORMATS)}")
    return {"format": params["format"]}


register(ApprovalKind(SensitiveAction.EXPORT_PATRONS, Permission.PATRONS_EXPORT, _checked_export))
