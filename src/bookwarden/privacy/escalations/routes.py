"""The platform DPO's oversight over HTTP: escalations across institutions, and taking one up."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from bookwarden.api.deps import database, requires
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database
from bookwarden.privacy.escalations import service as dpo_escalations
from bookwarden.privacy.escalations.service import EscalationOut, View

router = APIRouter(
    prefix="/api/v1/operator/privacy",
    tags=["operator: privacy oversight"],
    responses=responses(401, 403, 422),
)
OVERSIGHT = requires(Permission.PLATFORM_PRIVACY_OVERSIGHT)


@router.get("/escalations", response_model=list[EscalationOut])
def list_escalations(
    principal: Principal = Depends(OVERSIGHT),
    db: Database = Depends(database),
    view: Annotated[View, Query(description="unacknowledged (the worklist), open, or all")] = View.UNACKNOWLEDGED,
):
    """Late data-subject requests and complaints of every institution, the longest overdue first: the
    institution, the matter's kind, id and current state, its level and due date. Never its content."""
    return dpo_escalations.listing(db, principal, view)


@router.post(
    "/escalations/{tenant_id}/{escalation_id}/acknowledge",
    response_model=EscalationOut,
    responses=responses(404, 409),
)
def acknowledge_escalation(
    tenant_id: UUID,
    escalation_id: UUID,
    principal: Principal = Depends(OVERSIGHT),
    db: Database = Depends(database),
):
    """The DPO takes an escalation up; the institution sees it in its own audit trail."""
    return dpo_escalations.acknowledge(db, principal, tenant_id, escalation_id)
