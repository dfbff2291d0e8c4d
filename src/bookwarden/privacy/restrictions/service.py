"""Restriction of processing (GDPR art. 18): the patron's data is kept but not changed while restricted.

A restriction is applied when an approved restriction request is carried out (privacy/requests/service.py)
and lifted by a privacy officer. While it stands, the patron record refuses changes
(library/records.py `update`), except the correction a rectification request carries out: a
restriction while accuracy is contested ends in exactly that correction.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.privacy.restrictions.models import Restriction

TARGET = "patron"


def is_restricted(session: TenantSession, patron_id: UUID) -> bool:
    found = select(Restriction.patron_id).where(
        Restriction.tenant_id == session.tenant_id, Restriction.patron_id == patron_id
    )
    return session.scalar(found) is not None


def ensure_unrestricted(session: TenantSession, patron_id: UUID) -> None:
    if is_restricted(session, patron_id):
        raise Conflict(
            f"patron {patron_id}: processing is restricted at the patron's request; the record cannot be changed "
            "until a privacy officer lifts the restriction (DELETE /api/v1/privacy/restrictions/{patron_id})"
        )


def restrict(session: TenantSession, actor: Principal, patron_id: UUID, request_id: UUID | None) -> Restriction:
    """Restrict the patron's data (idempotent: an existing restriction stays as it was)."""
    existing = session.get(Restriction, (session.tenant_id, patron_id))
    if existing is not None:
        return existing
    restriction = Restriction(
        tenant_id=session.tenant_id, patron_id=patron_id, request_id=request_id, restricted_by=actor.id
    )
    session.add(restriction)
    session.flush()
    audit.record(session, Action.PRIVACY_RESTRICTION_APPLIED, (TARGET, patron_id), details={"request_id": request_id})
    return restriction


def lift(session: TenantSession, actor: Principal, patron_id: UUID) -> None:
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    restriction = session.get(Restriction, (session.tenant_id, patron_id))
    if restriction is None:
        raise NotFound(f"no restriction on patron {patron_id}")
    session.delete(restriction)
    session.flush()
    details = {"request_id": restriction.request_id, "restricted_at": restriction.restricted_at.isoformat()}
    audit.record(session, Action.PRIVACY_RESTRICTION_LIFTED, (TARGET, patron_id), actor=actor, details=details)
