"""The library's sensitive actions.

- A bulk export: every patron, decrypted, in one file. Approving carries nothing out; it lets the asker
  download once, within a day (library/export.py), every patron the sharing gate does not leave out for
  the purpose approved.
- A patron's deletion by staff: approving confirms it; the key and the rows are destroyed when the grace
  period ends (library/deletion.py).
"""

from __future__ import annotations

from uuid import UUID

from bookwarden.access.approvals.kinds import ApprovalKind, register
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.core.errors import InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.purposes import checked_purpose
from bookwarden.db.session import TenantSession
from bookwarden.library import deletion
from bookwarden.library.models import Patron

EXPORT_FORMATS = ("jsonl", "csv")
# The purpose patron records are kept for; an export for anything else names its own.
DEFAULT_PURPOSE = "patron_administration"


def _checked_export(session: TenantSession, params: dict) -> dict:
    if params.get("format") not in EXPORT_FORMATS:
        raise InvalidInput(f"format: one of {', '.join(EXPORT_FORMATS)}")
    # The purpose is approved with the format: the gate leaves out who objects to it, and never marketing.
    return {"format": params["format"], "purpose": checked_purpose(params.get("purpose", DEFAULT_PURPOSE))}


def _checked_deletion(session: TenantSession, params: dict) -> dict:
    try:
        patron_id = UUID(str(params.get("patron_id")))
    except ValueError:
        raise InvalidInput("patron_id: the id of the patron to delete") from None
    patron = session.get(Patron, (session.tenant_id, patron_id))
    if patron is None:
        raise NotFound(f"no patron {patron_id}")
    return {"patron_id": str(patron_id)}


register(
    ApprovalKind(SensitiveAction.EXPORT_PATRONS, Permission.PATRONS_EXPORT, _checked_export),
    ApprovalKind(SensitiveAction.DELETE_PATRON, Permission.PATRONS_WRITE, _checked_deletion, deletion.confirmed),
)
