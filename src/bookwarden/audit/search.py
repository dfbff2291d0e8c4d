"""Search and export a tenant's audit trail: the filters, keyset pages by sequence number, streamed exports.

Every read here runs in a tenant session and names no tenant: row-level security on
`audit_events` is what keeps one institution's trail out of another's results, whatever the
filters say. Searching the trail is itself an act on it, so each search and export leaves its
own event (filters and counts in the details, never a personal value) in the same transaction.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import (
    BigInteger,
    DateTime,
    Select,
    SmallInteger,
    String,
    Text,
    Uuid,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

from bookwarden.audit import contexts
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Detail, Outcome
from bookwarden.core.authorize import authorize
from bookwarden.core.csv_safety import spreadsheet_safe
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.db.session import Database, TenantSession

log = structlog.get_logger()

# Read-only view of the table made by migration 0009 (only its definer function writes it). A
# lightweight table clause, not an ORM model: it joins no metadata, so no schema check counts it twice.
events = table(
    "audit_events",
    column("tenant_id", Uuid),
    column("seq", BigInteger),
    column("id", Uuid),
    column("occurred_at", DateTime(timezone=True)),
    column("actor_kind", String),
    column("actor_id", Uuid),
    column("grant_id", Uuid),
    column("action", String),
    column("target_kind", String),
    column("target_id", Uuid),
    column("outcome", String),
    column("source_address", String),
    column("user_agent", String),
    column("request_id", String),
    column("details", JSONB),
    column("hash", BYTEA),
    column("format", SmallInteger),
    column("context_commitment", BYTEA),
)
# What a search returns of each event, in this order (also the CSV header). The chain's other
# columns (prev_hash, body_digest) serve verification, which has its own export.
FIELDS = (
    "seq",
    "id",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "grant_id",
    "action",
    "target_kind",
    "target_id",
    "outcome",
    "source_address",
    "user_agent",
    "context",
    "request_id",
    "details",
    "hash",
)

# What became of an event's source address and user agent (the `context` field).
KEPT, PURGED, NONE = "kept", contexts.PURGED, "none"
# Events of format 2 keep them apart (audit/contexts.py) until the period or an erasure deletes them; events
# appended before migration 0026 keep them inside the hashed row.
_kept = contexts.contexts.c
with_context = events.outerjoin(
    contexts.contexts, and_(_kept.tenant_id == events.c.tenant_id, _kept.seq == events.c.seq)
)


def event_fields() -> dict[str, Any]:
    """Each field of FIELDS as the expression that reads it, the address and user agent wherever they are."""
    kept, c = _kept, events.c
    chosen: dict[str, Any] = {name: c[name] for name in FIELDS if name in c}
    chosen["source_address"] = func.coalesce(c.source_address, kept.source_address)
    chosen["user_agent"] = func.coalesce(c.user_agent, kept.user_agent)
    chosen["context"] = case(
        (or_(c.source_address.is_not(None), c.user_agent.is_not(None), kept.seq.is_not(None)), literal(KEPT)),
        (c.context_commitment.is_not(None), literal(PURGED)),
        else_=literal(NONE),
    )
    return {name: chosen[name].label(name) for name in FIELDS}


MAX_PAGE = 1000
EXPORT_BATCH = 1000  # rows fetched from the server-side cursor, and written, at a time


class Order(enum.StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"


class ExportFormat(enum.StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


MEDIA_TYPES = {ExportFormat.JSONL: "application/x-ndjson", ExportFormat.CSV: "text/csv"}


@dataclass(frozen=True)
class EventQuery:
    """Which events, in which order. Every filter given narrows the result (they combine with AND)."""

    actor_id: UUID | None = None
    actor_kind: str | None = None
    action: str | None = None  # an action name, or a prefix ending in "." ("patron." is every patron action)
    target_kind: str | None = None
    target_id: UUID | None = None
    outcome: Outcome | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive: since=March 1st, until=April 1st is all of March
    order: Order = Order.NEWEST

    def details(self) -> dict[str, Detail]:
        """The filters given, as the search's own audit event states them: ids, names and times only."""
        given: dict[str, Detail] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            given[f.name] = str(value) if isinstance(value, UUID | enum.Enum) else value
        return given


@dataclass(frozen=True)
class Page:
    events: list[dict[str, Any]]
    next_cursor: int | None  # seq of the last event returned, when more follow


def statement(query: EventQuery, columns: Sequence[Any] | None = None) -> Select:
    """The SELECT of `query` (of `columns`, FIELDS by default), ordered by seq for stable keyset pages."""
    c = events.c
    stmt = select(*(columns if columns is not None else event_fields().values())).select_from(with_context)
    if query.actor_id is not None:
        stmt = stmt.where(c.actor_id == query.actor_id)
    if query.actor_kind is not None:
        stmt = stmt.where(c.actor_kind == query.actor_kind)
    if query.action is not None:
        if query.action.endswith("."):
            # autoescape: "_" is a LIKE wildcard and action names are full of them ("reading_list.").
            stmt = stmt.where(c.action.startswith(query.action, autoescape=True))
        else:
            stmt = stmt.where(c.action == query.action)
    if query.target_kind is not None:
        stmt = stmt.where(c.target_kind == query.target_kind)
    if query.target_id is not None:
        stmt = stmt.where(c.target_id == query.target_id)
    if query.outcome is not None:
        stmt = stmt.where(c.outcome == query.outcome.value)
    if query.since is not None:
        stmt = stmt.where(c.occurred_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(c.occurred_at < query.until)
    return stmt.order_by(c.seq.desc() if query.order is Order.NEWEST else c.seq.asc())


def search(session: TenantSession, query: EventQuery, *, limit: int = 100, cursor: int | None = None) -> Page:
    """One page of the tenant's events matching `query`, after `cursor` in the query's order."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = statement(query)
    if cursor is not None:
        stmt = stmt.where(events.c.seq < cursor if query.order is Order.NEWEST else events.c.seq > cursor)
    rows = session.execute(stmt.limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    found = [_event(row) for row in rows[:limit]]
    return Page(found, found[-1]["seq"] if more and found else None)


def search_recorded(
    session: TenantSession, actor: Principal, query: EventQuery, *, limit: int, cursor: int | None
) -> Page:
    """`search`, and its own audit event in the same transaction."""
    authorize(actor, Permission.AUDIT_READ)
    page = search(session, query, limit=limit, cursor=cursor)
    details = {**query.details(), "limit": limit, "returned": len(page.events)}
    if cursor is not None:
        details["cursor"] = cursor
    audit.record(session, Action.AUDIT_SEARCHED, details=details)
    return page


def _event(row: Any) -> dict[str, Any]:
    event = {name: row[name] for name in FIELDS}
    event["occurred_at"] = row["occurred_at"].astimezone(UTC)
    event["hash"] = bytes(row["hash"]).hex()
    return event


# -- export --------------------------------------------------------------------------------


def export(
    db: Database,
    scope: Callable[[], AbstractContextManager[TenantSession]],
    query: EventQuery,
    fmt: ExportFormat,
    context: audit.Context,
    action: Action = Action.AUDIT_EXPORTED,
) -> Iterator[bytes]:
    """Every event matching `query`, encoded in `fmt`, in chunks, and the export's own audit event.

    Rows come through a server-side cursor a batch at a time, so an export of millions of events
    holds one batch in memory. `scope` opens the tenant session (the API's refuses a suspended
    tenant); the first chunk is yielded only once the session is open and the query running, so a
    caller that takes it before answering still turns a refusal into a proper error.

    The event is recorded when the stream ends, with the number of rows sent: also when the reader
    stops early (closing the generator), since what it received was exported all the same. If the
    database fails mid-stream the transaction is lost, so the failure is recorded in one of its own.
    `context` says who exports and from where (the generator runs outside the request's context);
    its principal is the actor, who needs audit.read.
    """
    authorize(context.principal or SYSTEM, Permission.AUDIT_READ)
    encoder = _ENCODERS[fmt]
    sent, completed, tenant_id = 0, False, None
    try:
        with scope() as session:
            tenant_id = session.tenant_id
            stmt = statement(query, encoder.columns())
            result = session.execute(stmt, execution_options={"yield_per": EXPORT_BATCH})
            try:
                yield encoder.header()
                for batch in result.partitions():
                    chunk = encoder.rows(batch)
                    sent += len(batch)  # counted when handed over: a reader may stop at this very yield
                    yield chunk
                completed = True
            except GeneratorExit:
                pass  # the reader went away; the event below still commits
            finally:
                result.close()
            with audit.acting(context):
                audit.record(session, action, details=_export_details(query, fmt, sent, completed))
    except Exception as exc:
        if tenant_id is not None:
            _record_failed_export(db, tenant_id, query, fmt, sent, context, action, exc)
        raise


def _export_details(query: EventQuery, fmt: ExportFormat, sent: int, completed: bool) -> dict[str, Detail]:
    return {**query.details(), "format": fmt.value, "rows": sent, "completed": completed}


def _record_failed_export(db, tenant_id, query, fmt, sent, context, action, exc) -> None:
    details = {**_export_details(query, fmt, sent, False), "error": type(exc).__name__}
    try:
        with audit.acting(context):
            audit.record_now(db, action, outcome=Outcome.FAILED, details=details, tenant_id=tenant_id)
    except Exception as again:
        # The export already failed; not being able to say so must not hide why, but it is loud.
        log.error("audit.export_failure_not_recorded", error_type=type(again).__name__)


# -- encodings -----------------------------------------------------------------------------
# PostgreSQL writes the text of every value (JSON objects whole, for JSON lines): an export moves
# each event from the server to the reader with no Python object made per field.

UTC_TIME = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'  # the canonical encoding's form: UTC, microseconds, "Z"


def _texts() -> dict[str, Any]:
    """Each field as the text an export writes; seq stays a number, details stays JSON."""
    c = events.c
    texts: dict[str, Any] = {name: cast(value, Text) for name, value in event_fields().items()}
    texts["seq"] = c.seq
    texts["occurred_at"] = func.to_char(func.timezone("UTC", c.occurred_at), UTC_TIME)
    texts["details"] = c.details
    texts["hash"] = func.encode(c.hash, "hex")
    return texts


class _JsonLines:
    @staticmethod
    def columns() -> list[Any]:
        # json_build_object keeps the keys in FIELDS order (jsonb would sort them).
        pairs = [part for name, value in _texts().items() for part in (literal(name), value)]
        return [cast(func.json_build_object(*pairs), Text)]

    @staticmethod
    def header() -> bytes:
        return b""

    @staticmethod
    def rows(batch: Sequence[Any]) -> bytes:
        return "".join(f"{line}\n" for (line,) in batch).encode()


class _Csv:
    @staticmethod
    def columns() -> list[Any]:
        texts = _texts()
        texts["details"] = cast(events.c.details, Text)
        return list(texts.values())

    @staticmethod
    def header() -> bytes:
        return _csv_lines([FIELDS])

    @staticmethod
    def rows(batch: Sequence[Any]) -> bytes:
        return _csv_lines([spreadsheet_safe(row) for row in batch])  # user agents and details are anyone's text


def _csv_lines(lines: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)  # None is written as an empty cell
    return buffer.getvalue().encode()


_ENCODERS = {ExportFormat.JSONL: _JsonLines, ExportFormat.CSV: _Csv}


def daily_counts(session: TenantSession, actor: Principal, action: str, days: int) -> list[tuple[date, int]]:
    """How many `action` events each of the last `days` days (UTC) holds, oldest first, days without any
    included: what a chart of sign-in failures per day draws. Recorded like a search."""
    authorize(actor, Permission.AUDIT_READ)
    days = max(1, min(days, 366))
    today = session.scalar(select(func.current_date()))
    first = today - timedelta(days=days - 1)
    day = func.date(func.timezone("UTC", events.c.occurred_at))
    since = datetime.combine(first, time(), tzinfo=UTC)
    rows = session.execute(
        select(day, func.count()).where(events.c.action == action, events.c.occurred_at >= since).group_by(day)
    ).all()
    counted = dict(rows)
    audit.record(
        session, Action.AUDIT_SEARCHED, details={"action": action, "per_day": days, "since": since.isoformat()}
    )
    return [(first + timedelta(days=n), counted.get(first + timedelta(days=n), 0)) for n in range(days)]
