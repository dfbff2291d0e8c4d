"""Audit API: search the institution's trail a page at a time, or export it whole as JSON lines or CSV;
and the operators' usage report for charges.

Search and export are for the institution's auditors, security and privacy officers
(Permission.AUDIT_READ); each is recorded in the trail it reads. The usage report is for
platform operators (Permission.PLATFORM_USAGE_READ): counts and sizes, no customer data.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import anyio
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import iterate_in_threadpool

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.audit import record as audit
from bookwarden.audit import search
from bookwarden.audit.events import Outcome
from bookwarden.audit.search import EventQuery, ExportFormat, Order
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database
from bookwarden.library import usage as metering

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422))
READ = Depends(requires(Permission.AUDIT_READ))
USAGE = Depends(requires(Permission.PLATFORM_USAGE_READ))
MAX_SEQ = 2**63 - 1  # audit_events.seq is a PostgreSQL bigint


class AuditEventOut(BaseModel):
    seq: int
    id: UUID
    occurred_at: datetime
    actor_kind: str
    actor_id: UUID | None
    grant_id: UUID | None
    action: str
    target_kind: str | None
    target_id: UUID | None
    outcome: Outcome
    source_address: str | None
    user_agent: str | None
    context: Literal["kept", "purged", "none"] = Field(
        description="kept: the source address and user agent are shown; purged: deleted after their period or "
        "with an erased patron (the event keeps only a commitment to them); none: the event had neither"
    )
    request_id: str | None
    details: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: int | None


def event_query(
    actor_id: Annotated[UUID | None, Query(description="who acted: token, account or operator id")] = None,
    actor_kind: Annotated[
        str | None, Query(pattern=r"^[a-z_]{1,32}$", description="api_token, account, operator_token, system...")
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*\.?$",
            description='an action ("patron.viewed"), or a prefix ending in "." ("patron." for every patron action)',
        ),
    ] = None,
    target_kind: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_ .:-]{1,64}$")] = None,
    target_id: Annotated[UUID | None, Query()] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from", description="events at or after this time")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to", description="events before this time")] = None,
    order: Annotated[Order, Query(description="newest or oldest first")] = Order.NEWEST,
) -> EventQuery:
    return EventQuery(actor_id, actor_kind, action, target_kind, target_id, outcome, since, until, order)


Filters = Annotated[EventQuery, Depends(event_query)]


@router.get("/audit/events", response_model=AuditPage, tags=["audit"])
def search_events(
    query: Filters,
    principal: Principal = READ,
    db: Database = Depends(database),
    cursor: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=search.MAX_PAGE, description="page size")] = 100,
):
    """The institution's audit events matching every filter given, a page at a time (keyset by seq)."""
    with tenant_scope(db, principal) as session:
        page = search.search_recorded(session, principal, query, limit=limit, cursor=cursor)
    return AuditPage(items=page.events, next_cursor=page.next_cursor)


EXPORT_CONTENT = {media: {"schema": {"type": "string"}} for media in search.MEDIA_TYPES.values()}


@router.get(
    "/audit/events/export",
    response_class=StreamingResponse,
    tags=["audit"],
    responses={200: {"content": EXPORT_CONTENT, "description": "events as JSON lines or CSV, as an attachment"}},
)
def export_events(
    query: Filters,
    principal: Principal = READ,
    db: Database = Depends(database),
    format: Annotated[ExportFormat, Query(description="jsonl (one JSON object a line) or csv")] = ExportFormat.JSONL,
):
    """Every matching event, streamed; CSV cells that a spreadsheet would run as a formula start with '."""
    chunks = search.export(db, lambda: tenant_scope(db, principal), query, format, audit.current())
    # Take the first chunk here: it comes once the session is open, so a refusal (a suspended
    # institution) is still answered as a problem, before the 200 is sent.
    first = next(chunks)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    filename = f"audit-{principal.tenant_id}-{stamp}.{format.value}"
    return StreamingResponse(
        _closing(first, chunks),
        media_type=search.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _closing(first: bytes, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in iterate_in_threadpool(chunks):
            yield chunk
    finally:
        # Starlette drops a sync iterator without closing it when the client goes away. Closed
        # here, off the event loop, the export still commits its audit event with the rows sent.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(chunks.close)


# -- usage ---------------------------------------------------------------------------------


class TableUsageOut(BaseModel):
    rows: int
    bytes: int


class UsageOut(BaseModel):
    tenant_id: UUID
    slug: str
    month: str
    api_calls: int
    events_recorded: int
    records_held: int
    storage_bytes: int
    measured_at: datetime
    tables: dict[str, TableUsageOut]


@router.get("/operator/usage", response_model=list[UsageOut], tags=["operator: usage"], responses=responses(404))
def usage_report(
    principal: Principal = USAGE,
    db: Database = Depends(database),
    month: Annotated[
        str | None, Query(pattern=metering.MONTH.pattern, description="YYYY-MM (UTC); default: this month")
    ] = None,
    tenant_id: Annotated[UUID | None, Query(description="one institution; default: every one")] = None,
):
    """API calls, events, records held and storage bytes per institution for a calendar month (see metering.py)."""
    usages = metering.report(db, principal, month or metering.current_month(), tenant_id)
    return [UsageOut(slug=slug, **usage.as_dict()) for slug, usage in usages]
