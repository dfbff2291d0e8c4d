"""Objections: a patron's opt-out of disclosure to third parties, or of a materially different purpose.

The statement promises the choice "at the point of disclosure": whether personal information is
(i) disclosed to a third party or (ii) used for a purpose materially different from the one it was
collected for. An objection is recorded when a privacy officer approves an objection request
(the request lifecycle calls `record_objection`), and every disclosure asks `has_objected`
(privacy/disclosures/service.py). The history is append-only: withdrawing an objection is a new row, and
the latest row of a scope says whether the patron objects now.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import Uuid, any_, literal, select
from sqlalchemy.dialects.postgresql import ARRAY

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.errors import InvalidInput
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.privacy.consent.models import Objection
from bookwarden.privacy.consent.service import require_patron

THIRD_PARTY_DISCLOSURE = "third_party_disclosure"
PURPOSE_PREFIX = "purpose:"
SCOPE = re.compile(r"third_party_disclosure|purpose:[a-z0-9_]{1,80}")
SCOPE_PATTERN = f"^(?:{SCOPE.pattern})$"


def purpose_scope(name: str) -> str:
    """The objection scope of a purpose, e.g. purpose_scope("usage_analysis") == "purpose:usage_analysis"."""
    return checked_scope(PURPOSE_PREFIX + name)


def checked_scope(scope: str) -> str:
    if not isinstance(scope, str) or not SCOPE.fullmatch(scope):
        raise InvalidInput(
            "scope: third_party_disclosure, or purpose:<name> (lowercase letters, digits and _, at most 80)"
        )
    return scope


def record_objection(
    session: TenantSession,
    patron_id: UUID,
    scope: str,
    *,
    request_id: UUID | None = None,
    actor: Principal | None = None,
) -> Objection | None:
    """The patron objects to `scope` from now on. Idempotent: None when they already object.

    Called in the transaction that approves the objection request, whose principal acts (the
    audit context's, unless `actor` is given)."""
    return _append(session, patron_id, checked_scope(scope), True, request_id, actor)


def withdraw_objection(
    session: TenantSession,
    patron_id: UUID,
    scope: str,
    *,
    request_id: UUID | None = None,
    actor: Principal | None = None,
) -> Objection | None:
    """The patron no longer objects to `scope`. Idempotent: None when they did not object."""
    return _append(session, patron_id, checked_scope(scope), False, request_id, actor)


def has_objected(session: TenantSession, patron_id: UUID, scope: str) -> bool:
    """Whether the patron objects to `scope` now."""
    return patron_id in objectors(session, [patron_id], [scope])


def objectors(session: TenantSession, patron_ids: Iterable[UUID], scopes: Iterable[str]) -> set[UUID]:
    """Of `patron_ids`, those who object now to any of `scopes`: one query for a whole disclosure."""
    ids, scopes = list(set(patron_ids)), [checked_scope(s) for s in scopes]
    if not ids or not scopes:
        return set()
    latest = (
        select(Objection.patron_id, Objection.objected)
        .where(
            Objection.tenant_id == session.tenant_id,
            Objection.patron_id == any_(literal(ids, ARRAY(Uuid))),
            Objection.scope.in_(scopes),
        )
        .distinct(Objection.patron_id, Objection.scope)
        .order_by(Objection.patron_id, Objection.scope, Objection.seq.desc())
    )
    return {patron_id for patron_id, objected in session.execute(latest) if objected}


def objections_of(session: TenantSession, patron_id: UUID) -> list[Objection]:
    """The patron's objection history, oldest first (unaudited: the caller records its own event)."""
    return list(
        session.scalars(
            select(Objection)
            .where(Objection.tenant_id == session.tenant_id, Objection.patron_id == patron_id)
            .order_by(Objection.seq)
        )
    )


def current_objections(session: TenantSession, patron_id: UUID) -> list[str]:
    """The scopes the patron objects to now."""
    latest: dict[str, bool] = {}
    for row in objections_of(session, patron_id):
        latest[row.scope] = row.objected
    return sorted(scope for scope, objected in latest.items() if objected)


def _append(
    session: TenantSession,
    patron_id: UUID,
    scope: str,
    objected: bool,
    request_id: UUID | None,
    actor: Principal | None,
) -> Objection | None:
    require_patron(session, patron_id)
    if has_objected(session, patron_id, scope) == objected:
        return None
    principal = actor or audit.current().principal
    row = Objection(
        tenant_id=session.tenant_id,
        patron_id=patron_id,
        scope=scope,
        objected=objected,
        request_id=request_id,
        recorded_by=principal.id if principal is not None else None,
    )
    session.add(row)
    session.flush()
    action = Action.OBJECTION_RECORDED if objected else Action.OBJECTION_WITHDRAWN
    audit.record(
        session, action, ("patron", patron_id), actor=actor, details={"scope": scope, "request_id": request_id}
    )
    return row
