"""Legal holds: data a matter (litigation, an investigation, a regulator) requires kept, whatever its period.

A hold names a patron (all their data, or one retention category of it), or a whole category of
the institution's data (every patron's). It is active from when it is placed until it is lifted or
its `held_until` passes. While active, nothing it covers is purged (privacy/retention/service.py asks
`covers` / `held_patrons`) and the patron is not erased (the erasure asks `active_hold`). Placing
and lifting are recorded with the reason's length only: the reason is the matter's reference, kept
in the row for the officers who read it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.sensitive import check_fields
from bookwarden.db.session import TenantSession
from bookwarden.library.models import Patron
from bookwarden.privacy.retention.models import LegalHold, RetentionCategory

TARGET = "legal_hold"
LIST_LIMIT = 500


def _active() -> ColumnElement[bool]:
    return and_(LegalHold.lifted_at.is_(None), or_(LegalHold.held_until.is_(None), LegalHold.held_until > func.now()))


def active_hold(session: TenantSession, patron_id: UUID) -> LegalHold | None:
    """The active hold on this patron's data (any hold naming them), or None. The oldest when several."""
    return session.scalars(
        select(LegalHold)
        .where(LegalHold.tenant_id == session.tenant_id, LegalHold.patron_id == patron_id, _active())
        .order_by(LegalHold.placed_at, LegalHold.id)
        .limit(1)
    ).first()


def category_held(session: TenantSession, category: RetentionCategory) -> bool:
    """True when a hold covers `category` for every patron of the institution."""
    found = session.scalar(
        select(LegalHold.id)
        .where(
            LegalHold.tenant_id == session.tenant_id,
            LegalHold.patron_id.is_(None),
            LegalHold.category == category.value,
            _active(),
        )
        .limit(1)
    )
    return found is not None


def held_patrons(category: RetentionCategory) -> Select[tuple[UUID]]:
    """Patrons whose `category` data is held (a hold on all their data, or on that category): a subquery
    the purge's selection excludes. Row-level security keeps it inside the tenant in context."""
    return select(LegalHold.patron_id).where(
        LegalHold.patron_id.is_not(None),
        or_(LegalHold.category.is_(None), LegalHold.category == category.value),
        _active(),
    )


def patrons_held_entirely() -> Select[tuple[UUID]]:
    """Patrons all of whose data a hold keeps (it names them and no category): a subquery for the records
    that no retention category governs (complaints, data-subject requests, consent records)."""
    return select(LegalHold.patron_id).where(
        LegalHold.patron_id.is_not(None), LegalHold.category.is_(None), _active()
    )


def place(
    session: TenantSession,
    actor: Principal,
    *,
    reason: str,
    patron_id: UUID | None = None,
    category: RetentionCategory | None = None,
    held_until: datetime | None = None,
) -> LegalHold:
    authorize(actor, Permission.PRIVACY_HOLDS_MANAGE)
    if patron_id is None and category is None:
        raise InvalidInput("a hold names a patron, a category, or both")
    check_fields({"reason": reason})  # a matter's reference, never card or bank data
    if patron_id is not None and session.get(Patron, (session.tenant_id, patron_id)) is None:
        raise NotFound(f"patron_id: no patron {patron_id}")
    now = session.scalar(select(func.now()))
    if held_until is not None and held_until <= now:
        raise Conflict("held_until is already past: a hold must end in the future (or leave it out: until lifted)")
    hold = LegalHold(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        patron_id=patron_id,
        category=category.value if category is not None else None,
        reason=reason,
        placed_by=actor.id,
        placed_at=now,
        held_until=held_until,
    )
    session.add(hold)
    session.flush()
    record(session, Action.LEGAL_HOLD_PLACED, (TARGET, hold.id), actor=actor, details=_details(hold))
    return hold


def lift(session: TenantSession, actor: Principal, hold_id: UUID) -> LegalHold:
    authorize(actor, Permission.PRIVACY_HOLDS_MANAGE)
    hold = session.get(LegalHold, (session.tenant_id, hold_id), with_for_update=True)
    if hold is None:
        raise NotFound(f"no legal hold {hold_id}")
    if hold.lifted_at is not None:
        raise Conflict(f"the hold was lifted already, at {hold.lifted_at.isoformat(timespec='seconds')}")
    hold.lifted_at, hold.lifted_by = session.scalar(select(func.now())), actor.id
    session.flush()
    record(session, Action.LEGAL_HOLD_LIFTED, (TARGET, hold.id), actor=actor, details=_details(hold))
    return hold


def list_holds(session: TenantSession, actor: Principal, *, include_ended: bool = False) -> list[LegalHold]:
    authorize(actor, Permission.PRIVACY_HOLDS_MANAGE)
    query = select(LegalHold).where(LegalHold.tenant_id == session.tenant_id)
    if not include_ended:
        query = query.where(_active())
    found = list(session.scalars(query.order_by(LegalHold.placed_at.desc(), LegalHold.id).limit(LIST_LIMIT)))
    ids = [hold.id for hold in found]
    record(session, Action.LEGAL_HOLD_LISTED, (TARGET, None), actor=actor, details={"ids": ids, "count": len(ids)})
    return found


def _details(hold: LegalHold) -> dict:
    # Ids, the category and times: the reason stays in the row (it may name a case, never recorded twice).
    return {
        "patron_id": hold.patron_id,
        "category": hold.category,
        "held_until": hold.held_until.isoformat() if hold.held_until else None,
        "reason_length": len(hold.reason),
    }
