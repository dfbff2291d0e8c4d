"""Usage metering for charges: per institution, per calendar month (UTC).

What is measured, and how:

- **API calls**: the number of distinct request ids among the month's events in the
  institution's own chain, leaving out the platform's own actors: console commands and
  scheduled duties (`system`) and operator staff working under a grant (`operator_token`),
  whose support work is not the institution's usage. Every route writes at least one event, and so does every
  refusal that names the institution (denied, invalid, not found), so each HTTP request made
  for the institution is one id here and a request that wrote several events counts once.
  Requests that never reached the institution (no valid credential, health checks, metrics)
  leave nothing in its chain and are not counted. A client's own X-Request-ID only prefixes
  the id (api/app.py `request_id_for` adds a random suffix), so reusing one cannot merge calls.
- **Events recorded**: the month's events in the institution's chain, all actors included.
- **Records held**: rows per customer-data table (the hosted library domain), counted when
  the report runs, not at the month's end: the tables keep no history to count from.
- **Storage bytes**: per table, the sum of `pg_column_size` of each of the institution's rows
  (the row's values as PostgreSQL stores them, compressed where compressed, plus the row
  header), measured when the report runs. The institution's audit trail is listed too. Not
  counted: indexes, free space in pages and TOAST chunk overhead, which are shared and not
  attributable to one institution's rows.

Everything is read in the institution's tenant session: row-level security bounds every count
to its rows, and no row's values are read, only counts and sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Table, distinct, func, select

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.audit.search import events
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.library.records import KINDS
from bookwarden.tenancy.service import get_tenant, list_tenants

MONTH = re.compile(r"^([1-9][0-9]{3})-(0[1-9]|1[0-2])$")
CUSTOMER_TABLES: tuple[Table, ...] = tuple(kind.model.__table__ for kind in KINDS)
AUDIT_TABLE = "audit_events"
# Their requests are not calls: the platform's own duties and its operators, by token or account.
PLATFORM_ACTORS = (
    PrincipalKind.SYSTEM.value,
    PrincipalKind.OPERATOR_TOKEN.value,
    PrincipalKind.OPERATOR.value,
    PrincipalKind.CONSOLE.value,
)


@dataclass(frozen=True)
class TableUsage:
    rows: int
    bytes: int


@dataclass(frozen=True)
class Usage:
    tenant_id: UUID
    month: str  # YYYY-MM
    api_calls: int
    events_recorded: int
    tables: dict[str, TableUsage]  # customer-data tables, then the audit trail
    measured_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def records_held(self) -> int:
        return sum(usage.rows for name, usage in self.tables.items() if name != AUDIT_TABLE)

    @property
    def storage_bytes(self) -> int:
        return sum(usage.bytes for usage in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": str(self.tenant_id),
            "month": self.month,
            "api_calls": self.api_calls,
            "events_recorded": self.events_recorded,
            "records_held": self.records_held,
            "storage_bytes": self.storage_bytes,
            "measured_at": self.measured_at.isoformat(),
            "tables": {name: {"rows": u.rows, "bytes": u.bytes} for name, u in self.tables.items()},
        }


def table_names() -> list[str]:
    """The tables a usage report breaks down, in its order."""
    return [t.name for t in CUSTOMER_TABLES] + [AUDIT_TABLE]


def parse_month(text: str) -> tuple[int, int]:
    found = MONTH.match(text)
    if found is None:
        raise InvalidInput(f"month: {text!r} is not a month as YYYY-MM (2026-03)")
    return int(found[1]), int(found[2])


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def measure(session: TenantSession, month: str) -> Usage:
    """The institution's usage for `month` (YYYY-MM), read in its own tenant session."""
    year, number = parse_month(month)
    # Bounds computed by PostgreSQL, in UTC: December 9999 ends in a year Python cannot represent.
    start = func.make_timestamptz(year, number, 1, 0, 0, 0, "UTC")
    in_month = (events.c.occurred_at >= start) & (events.c.occurred_at < start + func.make_interval(0, 1))
    calls = func.count(distinct(events.c.request_id)).filter(events.c.actor_kind.not_in(PLATFORM_ACTORS))
    api_calls, recorded = session.execute(select(calls, func.count()).select_from(events).where(in_month)).one()
    tables = {t.name: _table_usage(session, t) for t in CUSTOMER_TABLES}
    tables[AUDIT_TABLE] = _table_usage(session, events)
    return Usage(session.tenant_id, f"{year:04d}-{number:02d}", api_calls, recorded, tables)


def _table_usage(session: TenantSession, table) -> TableUsage:
    # The whole-row reference (pg_column_size(patrons)) sizes the row as stored, every column at once.
    size = func.coalesce(func.sum(func.pg_column_size(table.table_valued())), 0)
    rows, stored = session.execute(select(func.count(), size).select_from(table)).one()
    return TableUsage(rows, int(stored))


def report(db: Database, actor: Principal, month: str, tenant: UUID | str | None = None) -> list[tuple[str, Usage]]:
    """(slug, usage) of one institution (id or slug) or of every one, for `month`; recorded on the
    platform chain (an operator's act; in the institutions' chains it would count as their calls)."""
    authorize(actor, Permission.PLATFORM_USAGE_READ)
    parse_month(month)
    with platform_session(db) as session:
        tenants = [get_tenant(session, tenant)] if tenant is not None else list_tenants(session)
        named = [(t.id, t.slug) for t in tenants]
    usages = []
    for tenant_id, slug in named:
        with tenant_session(db, tenant_id) as session:
            usages.append((slug, measure(session, month)))
    with platform_session(db) as session:
        details = {"month": month, "tenants": len(named)}
        if tenant is not None:
            details["tenant_id"] = str(named[0][0])
        audit.record(session, Action.USAGE_REPORTED, details=details)
    return usages


def own_usage(session: TenantSession, actor: Principal, month: str) -> Usage:
    """The institution's own usage for `month`, as the platform meters it for charges: for those who read
    its trail (audit.read), since calls and events are counted from it. Recorded in its own chain."""
    authorize(actor, Permission.AUDIT_READ)
    usage = measure(session, month)
    audit.record(session, Action.USAGE_REPORTED, details={"month": month, "own": True})
    return usage
