"""Alerts API: operators read, acknowledge and close every alert (`platform.alerts.*`); an institution reads the
alerts that concern it (`alerts.read`), and another institution's alert answers 404 as a missing one does."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, platform_session
from bookwarden.monitor.alerts import service
from bookwarden.monitor.alerts.models import AlertSeverity, AlertStatus

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422))
OPERATOR_READ = Depends(requires(Permission.PLATFORM_ALERTS_READ))
OPERATOR_MANAGE = Depends(requires(Permission.PLATFORM_ALERTS_MANAGE))
INSTITUTION_READ = Depends(requires(Permission.ALERTS_READ))


class AlertOut(BaseModel):
    id: UUID
    rule: str
    title: str
    severity: AlertSeverity
    kind: str
    status: AlertStatus
    grouped: dict[str, Any]
    institution_id: UUID | None
    source_address: str | None
    summary: str | None
    first_seen: datetime
    last_seen: datetime
    count: int
    acknowledged_at: datetime | None
    closed_at: datetime | None


def alert_filter(
    status: Annotated[AlertStatus | None, Query()] = None,
    severity: Annotated[AlertSeverity | None, Query(description="this severity and above")] = None,
    rule: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> service.AlertFilter:
    return service.AlertFilter(status=status, severity_at_least=severity, rule=rule, limit=limit)


def _out(stored) -> AlertOut:
    return AlertOut.model_validate(stored, from_attributes=True)


@router.get("/operator/alerts", response_model=list[AlertOut], tags=["operator: alerts"])
def list_alerts(
    found: service.AlertFilter = Depends(alert_filter),
    principal: Principal = OPERATOR_READ,
    db: Database = Depends(database),
):
    """Every stored alert, most recent first."""
    with platform_session(db) as session:
        return [_out(a) for a in service.list_alerts(session, principal, found)]


@router.get("/operator/alerts/{alert_id}", response_model=AlertOut, tags=["operator: alerts"], responses=responses(404))
def get_alert(alert_id: UUID, principal: Principal = OPERATOR_READ, db: Database = Depends(database)):
    with platform_session(db) as session:
        return _out(service.get_alert(session, principal, alert_id))


@router.post(
    "/operator/alerts/{alert_id}/acknowledge",
    response_model=AlertOut,
    tags=["operator: alerts"],
    responses=responses(404, 409),
)
def acknowledge(alert_id: UUID, principal: Principal = OPERATOR_MANAGE, db: Database = Depends(database)):
    """Someone is on it: repeats still fold into the alert until it is closed."""
    with platform_session(db) as session:
        return _out(service.acknowledge(session, principal, alert_id))


@router.post(
    "/operator/alerts/{alert_id}/close",
    response_model=AlertOut,
    tags=["operator: alerts"],
    responses=responses(404, 409),
)
def close(alert_id: UUID, principal: Principal = OPERATOR_MANAGE, db: Database = Depends(database)):
    """Done: the next match of the rule and group opens a new alert."""
    with platform_session(db) as session:
        return _out(service.close(session, principal, alert_id))


@router.get("/alerts", response_model=list[AlertOut], tags=["alerts"])
def list_institution_alerts(
    found: service.AlertFilter = Depends(alert_filter),
    principal: Principal = INSTITUTION_READ,
    db: Database = Depends(database),
):
    """The security alerts that concern this institution, most recent first."""
    with tenant_scope(db, principal) as session:
        return [_out(a) for a in service.list_for_institution(session, principal, found)]


@router.get("/alerts/{alert_id}", response_model=AlertOut, tags=["alerts"], responses=responses(404))
def get_institution_alert(alert_id: UUID, principal: Principal = INSTITUTION_READ, db: Database = Depends(database)):
    with tenant_scope(db, principal) as session:
        return _out(service.get_for_institution(session, principal, alert_id))
