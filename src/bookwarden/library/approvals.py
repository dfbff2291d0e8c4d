"""The library's sensitive action: every patron, decrypted, in one file. Approving carries nothing
out; it lets the asker download once, within a day (library/export.py), every patron the sharing gate
does not leave out for the purpose approved."""

from __future__ import annotations

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.access.permissions import Permission
from bookwarden.core.errors import InvalidInput
from bookwarden.core.purposes import checked_purpose
from bookwarden.db.session import TenantSession

EXPORT_FORMATS = ("jsonl", "csv")
# The purpose patron records are kept for; an export for anything else names its own.
DEFAULT_PURPOSE = "patron_administration"


def _checked_export(session: TenantSession, params: dict) -> dict:
    if params.get("format") not in EXPORT_FORMATS:
        raise InvalidInput(f"format: one of {', '.join(EXPORT_FORMATS)}")
    # The purpose is approved with the format: the gate leaves out who objects to it, and never marketing.
    return {"format": params["format"], "purpose": checked_purpose(params.get("purpose", DEFAULT_PURPOSE))}


register(ApprovalKind(SensitiveAction.EXPORT_PATRONS, Permission.PATRONS_EXPORT, _checked_export))
