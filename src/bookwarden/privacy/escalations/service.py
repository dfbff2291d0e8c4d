"""Escalation to the platform's data protection officer (DPO): late requests and complaints.

The institution is the controller: its own privacy officers are told first, by mail, and they
decide. When a data-subject request passes its due date, or a complaint goes unacknowledged, at
risk or overdue, the hourly deadline jobs also raise an escalation to the DPO, in the same
transaction as the officers' mail (`raise_escalation`). The DPO is platform staff (the processor's
oversight, `platform.privacy.oversight`), so an escalation holds metadata only: institution, which
request or complaint, the level and the due date. The DPO lists them across institutions through one
definer function that also reports the matter's current state, never its content, and takes one up
(`acknowledge`); the acknowledgement is recorded in the institution's own trail, so the institution
sees that the platform's DPO looked.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import select, text

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.clock import db_now
from bookwarden.core.errors import Conflict, Forbidden, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.privacy.escalations.models import DpoEscalation, Level, SubjectKind
from bookwarden.tenancy.service import get_tenant

TARGET = "dpo_escalation"
LIST_LIMIT = 1_000  # the DPO's list, most overdue first; a longer backlog is a finding in itself


class View(enum.StrEnum):
    UNACKNOWLEDGED = "unacknowledged"  # still open, and no DPO has taken it up: the worklist
    OPEN = "open"  # the matter is still open, taken up or not
    ALL = "all"  # every escalation ever raised, settled ones too


class EscalationOut(BaseModel):
    """What the DPO sees: the institution, the matter's kind, id and state, how late it is. No content."""

    tenant_id: UUID
    tenant_slug: str
    id: UUID
    subject_kind: SubjectKind
    subject_id: UUID
    level: Level
    subject_state: str  # the request's state or the complaint's status now; "gone" once erased
    due_at: datetime
    days_past_due: int  # negative: days still left (a complaint at risk)
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: UUID | None


def raise_escalation(
    session: TenantSession, kind: SubjectKind, subject_id: UUID, level: Level, due_at: datetime
) -> UUID:
    """Called by a deadline job inside the institution's transaction; once per matter and level (the
    job flags the matter in the same transaction, and a unique constraint backs it)."""
    escalation = DpoEscalation(
        tenant_id=session.tenant_id, subject_kind=kind, subject_id=subject_id, level=level, due_at=due_at
    )
    session.add(escalation)
    session.flush()
    return escalation.id


def listing(db: Database, actor: Principal, view: View = View.UNACKNOWLEDGED) -> list[EscalationOut]:
    """Escalations across institutions, the longest overdue first. Recorded in the platform's trail."""
    _oversight(actor)
    with platform_session(db) as session:
        rows = session.execute(
            text("SELECT * FROM bookwarden_dpo_escalations(:view, :n)"), {"view": view.value, "n": LIST_LIMIT}
        ).mappings()
        now = db_now(session)
        found = [_out(row, now) for row in rows]
        audit.record(
            session,
            Action.DPO_ESCALATION_LISTED,
            (TARGET, None),
            details={"view": view.value, "count": len(found), "tenants": len({e.tenant_id for e in found})},
        )
    return found


def acknowledge(db: Database, actor: Principal, tenant_ref: UUID | str, escalation_id: UUID) -> EscalationOut:
    """The DPO takes an escalation up. Recorded in the institution's trail, where its staff see it."""
    _oversight(actor)
    with platform_session(db) as session:
        tenant = get_tenant(session, tenant_ref)
        tenant_id, slug = tenant.id, tenant.slug
    with tenant_session(db, tenant_id) as session:
        escalation = session.scalars(
            select(DpoEscalation)
            .where(DpoEscalation.tenant_id == tenant_id, DpoEscalation.id == escalation_id)
            .with_for_update()
        ).first()
        if escalation is None:
            raise NotFound(f"no escalation {escalation_id} for this institution")
        if escalation.acknowledged_at is not None:
            raise Conflict(f"the escalation was acknowledged already, at {escalation.acknowledged_at.isoformat()}")
        now = db_now(session)
        escalation.acknowledged_at, escalation.acknowledged_by = now, actor.id
        session.flush()
        audit.record(
            session,
            Action.DPO_ESCALATION_ACKNOWLEDGED,
            (TARGET, escalation.id),
            details={
                "subject_kind": escalation.subject_kind,
                "subject_id": str(escalation.subject_id),
                "level": escalation.level,
            },
        )
        row = {c.name: getattr(escalation, c.name) for c in DpoEscalation.__table__.columns}
        return _out({**row, "tenant_slug": slug, "subject_state": _state_of(session, escalation)}, now)


# The matter's current state, read by SQL: requests and complaints raise escalations through this
# module, so it does not import their areas back. Table and column names are constants, never input.
STATE_OF = {
    SubjectKind.PRIVACY_REQUEST: text("SELECT state FROM privacy_requests WHERE tenant_id = :tenant AND id = :id"),
    SubjectKind.COMPLAINT: text("SELECT status FROM complaints WHERE tenant_id = :tenant AND id = :id"),
}


def _state_of(session: TenantSession, escalation: DpoEscalation) -> str:
    query = STATE_OF[SubjectKind(escalation.subject_kind)]
    state = session.scalar(query, {"tenant": escalation.tenant_id, "id": escalation.subject_id})
    return state or "gone"


def _out(row, now: datetime) -> EscalationOut:
    days_past_due = math.floor((now - row["due_at"]).total_seconds() / 86400)
    return EscalationOut(**{**row, "days_past_due": days_past_due})


def _oversight(actor: Principal) -> None:
    authorize(actor, Permission.PLATFORM_PRIVACY_OVERSIGHT)
    if actor.tenant_id is not None:
        # Defence in depth: the permission is a platform one no tenant role can hold.
        raise Forbidden("the DPO's oversight belongs to platform staff")
