"""Records of processing over HTTP: the institution's own art. 30 record, as JSON or CSV."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database
from bookwarden.privacy.records import service as records
from bookwarden.privacy.records.service import MEDIA_TYPES, RecordsFormat

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy"], responses=responses(401, 403, 422))


class ActivityOut(BaseModel):
    category: str
    description: str
    data_subjects: list[str]
    purposes: list[str]
    recipients: list[str]
    retention: str
    keep_days: int | None
    locations: list[str]
    protection: list[str]


class RecordsOut(BaseModel):
    generated_at: datetime
    controller: dict[str, str]
    processor: dict[str, str | None]
    activities: list[ActivityOut]
    security_measures: list[str]
    third_country_transfers: str


@router.get(
    "/records-of-processing",
    response_model=RecordsOut,
    responses={200: {"content": {MEDIA_TYPES[RecordsFormat.CSV]: {"schema": {"type": "string"}}}}},
)
def records_of_processing(
    principal: Principal = Depends(requires(Permission.PRIVACY_RECORDS_READ)),
    db: Database = Depends(database),
    format: Annotated[RecordsFormat, Query(description="json, or csv (one row per category)")] = RecordsFormat.JSON,
):
    """The institution as controller, the platform as processor, and per category of personal data:
    data subjects, purposes, recipients, retention, where it is held and how it is protected."""
    with tenant_scope(db, principal) as session:
        body = records.export(session, principal, format)
    headers = {}
    if format is RecordsFormat.CSV:
        headers["Content-Disposition"] = f'attachment; filename="records-of-processing-{principal.tenant_id}.csv"'
    return Response(body, media_type=MEDIA_TYPES[format], headers=headers)
