"""Retention over HTTP: periods (changed under maker-checker), the preview, purge reports, legal holds."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from bookwarden.access.routes import ApprovalOut
from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import lines
from bookwarden.db.session import Database
from bookwarden.privacy.retention import holds
from bookwarden.privacy.retention import service as retention
from bookwarden.privacy.retention.models import RetentionCategory
from bookwarden.privacy.retention.service import BOUNDS, CategoryPreview, PeriodOut, RunOut

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy: retention"], responses=responses(401, 403, 422))
MANAGE = Depends(requires(Permission.PRIVACY_RETENTION_MANAGE))
HOLDS = Depends(requires(Permission.PRIVACY_HOLDS_MANAGE))


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


@router.get("/retention/policies", response_model=list[PeriodOut])
def retention_policies(principal: Principal = MANAGE, db: Database = Depends(database)):
    """Every category's period: what applies, the registry's default, the bounds an institution may choose."""
    with tenant_scope(db, principal) as session:
        return retention.view_periods(session, principal)


def _period_input(category: RetentionCategory) -> type[BaseModel]:
    """The body of one category's change: its bounds in the schema, so the schema says what is accepted."""
    bounds = BOUNDS[category]
    days = Annotated[int, Field(ge=bounds.least, le=bounds.most, description=bounds.why)]
    name = f"{category.title().replace('_', '')}PeriodIn"
    return create_model(name, __base__=Input, keep_days=((days | None) if bounds.forever else days, ...))


def _add_period_route(category: RetentionCategory) -> None:
    body_model = _period_input(category)

    @router.put(
        f"/retention/policies/{category.value}",
        status_code=202,
        response_model=ApprovalOut,
        name=f"set_{category.value}_retention",
        responses=responses(409),
    )
    def ask_period(
        body: body_model,  # type: ignore[valid-type]
        principal: Principal = MANAGE,
        db: Database = Depends(database),
    ):
        """Ask for a new period (null: kept until deleted, where allowed); applied when another holder of
        privacy.retention.manage approves it at POST /api/v1/approvals/{id}/approve."""
        with tenant_scope(db, principal) as session:
            return retention.ask_change(session, principal, category, body.keep_days)


for _category in RetentionCategory:
    _add_period_route(_category)


@router.get("/retention/preview", response_model=list[CategoryPreview])
def retention_preview(principal: Principal = MANAGE, db: Database = Depends(database)):
    """What the next purge would remove per category (counts, the oldest date), and what holds keep."""
    with tenant_scope(db, principal) as session:
        return retention.preview(session, principal)


@router.get("/retention/runs", response_model=list[RunOut])
def retention_runs(principal: Principal = MANAGE, db: Database = Depends(database)):
    """The latest purge runs, newest first: per category what was removed, kept by a hold, or failed."""
    with tenant_scope(db, principal) as session:
        return retention.list_runs(session, principal)


@router.get("/retention/runs/{run_id}", response_model=RunOut, responses=responses(404))
def retention_run(run_id: UUID, principal: Principal = MANAGE, db: Database = Depends(database)):
    with tenant_scope(db, principal) as session:
        return retention.view_run(session, principal, run_id)


# -- legal holds -----------------------------------------------------------------------------------


class HoldIn(Input):
    reason: Annotated[lines(500), Field(min_length=3, description="the matter: a case or court reference")]
    held_until: AwareDatetime | None = None  # None: until lifted


class PatronHoldIn(HoldIn):
    """A patron's data: all of it, or one category."""

    patron_id: UUID
    category: RetentionCategory | None = None


class CategoryHoldIn(HoldIn):
    """One category of every patron's data."""

    category: RetentionCategory


class HoldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    patron_id: UUID | None
    category: RetentionCategory | None
    reason: str
    placed_by: UUID
    placed_at: AwareDatetime
    held_until: AwareDatetime | None
    lifted_by: UUID | None
    lifted_at: AwareDatetime | None


@router.post("/holds", status_code=201, response_model=HoldOut, responses=responses(404, 409))
def place_hold(body: PatronHoldIn | CategoryHoldIn, principal: Principal = HOLDS, db: Database = Depends(database)):
    """Keep a patron's data (all of it, or one category), or a whole category, whatever its period:
    nothing it covers is purged or erased until it is lifted or `held_until` passes."""
    with tenant_scope(db, principal) as session:
        return holds.place(
            session,
            principal,
            reason=body.reason,
            patron_id=getattr(body, "patron_id", None),
            category=body.category,
            held_until=body.held_until,
        )


@router.get("/holds", response_model=list[HoldOut])
def list_holds(
    principal: Principal = HOLDS,
    db: Database = Depends(database),
    include_ended: Annotated[bool, Query(description="also holds lifted or past their end")] = False,
):
    with tenant_scope(db, principal) as session:
        return holds.list_holds(session, principal, include_ended=include_ended)


@router.post("/holds/{hold_id}/lift", response_model=HoldOut, responses=responses(404, 409))
def lift_hold(hold_id: UUID, principal: Principal = HOLDS, db: Database = Depends(database)):
    with tenant_scope(db, principal) as session:
        return holds.lift(session, principal, hold_id)
