"""Retention's part in lower layers: a patron under legal hold is neither deleted nor erased
(library/guards.py asks before every deletion of a patron, the erasure's included)."""

from __future__ import annotations

from uuid import UUID

from bookwarden.core.errors import Conflict
from bookwarden.db.session import TenantSession
from bookwarden.library.guards import guard_patron_deletion
from bookwarden.privacy.retention.holds import active_hold


def _not_held(session: TenantSession, patron_id: UUID) -> None:
    hold = active_hold(session, patron_id)
    if hold is not None:
        until = f" until {hold.held_until.isoformat()}" if hold.held_until else ""
        raise Conflict(
            f"patron {patron_id} is under legal hold {hold.id}{until}: nothing of theirs may be erased or deleted "
            "until the hold is lifted"
        )


guard_patron_deletion(_not_held)
