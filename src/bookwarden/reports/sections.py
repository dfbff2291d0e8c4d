"""The sections of the monthly security report, each read from the area that owns its numbers.

An institution's report reads its own chain and rows only (a tenant session: row-level security holds the
rest back); the platform's report adds the platform's chain (operators) to every institution's, as counts.
Monitoring's address blocks and host checks are the platform's: an institution's report shows the platform's
numbers, labelled so (`"scope": "platform"`). Sections whose area is not built yet are registered unavailable,
with the reason (registry.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from bookwarden.access import summary as access
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.backup import summary as backups
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity import summary as identity
from bookwarden.incidents import summary as incidents_summary
from bookwarden.monitor.alerts import summary as alerts_summary
from bookwarden.monitor.fim import summary as host_checks
from bookwarden.monitor.response import summary as blocks_summary
from bookwarden.privacy.requests import summary as requests
from bookwarden.reports.registry import Month, Scope, section
from bookwarden.tenancy.models import Tenant
from bookwarden.tenancy.service import list_tenants


def institutions(db: Database, scope: Scope) -> list[Tenant]:
    """The institutions a scope covers: itself, or every one."""
    with platform_session(db) as session:
        return [t for t in list_tenants(session) if scope.is_platform or t.id == scope.tenant_id]


def chains(db: Database, scope: Scope) -> Iterator[UUID]:
    """The audit chains a scope covers: the institution's; or the platform's and every institution's."""
    if scope.is_platform:
        yield PLATFORM_CHAIN
    yield from (t.id for t in institutions(db, scope))


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + value


def sign_ins(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    days: dict[str, dict[str, int]] = {}
    for chain in chains(db, scope):
        with tenant_session(db, chain) as session:
            for day, counts in identity.sign_ins(session, month.start, month.end).items():
                _add(days.setdefault(day.isoformat(), {}), counts)
    totals: dict[str, int] = dict.fromkeys(identity.SIGN_IN_ACTIONS.values(), 0)
    for counts in days.values():
        _add(totals, counts)
    zero = dict.fromkeys(identity.SIGN_IN_ACTIONS.values(), 0)
    every_day = [
        {"day": f"{month}-{d:02d}", **{**zero, **days.get(f"{month}-{d:02d}", {})}} for d in range(1, month.days + 1)
    ]
    return {"totals": totals, "days": every_day}


def entitlement_changes(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    by_action: dict[str, int] = {}
    for chain in chains(db, scope):
        with tenant_session(db, chain) as session:
            _add(by_action, access.entitlement_changes(session, month.start, month.end))
    return {"total": sum(by_action.values()), "by_action": {k: v for k, v in by_action.items() if v}}


def operator_grants(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    totals: dict[str, int] = {}
    per_institution = []
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            counts = access.grants(session, month.start, month.end)
        _add(totals, counts)
        if scope.is_platform and any(counts.values()):
            per_institution.append({"institution": tenant.slug, **counts})
    found: dict[str, Any] = {"totals": totals}
    if scope.is_platform:
        found["institutions"] = per_institution
    return found


def privacy_requests(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    per_institution = []
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            counts = requests.monthly(session, month.start, month.end, now)
        by_kind = counts.pop("received_by_kind")
        most_late = counts.pop("most_days_past_deadline")
        _add(totals, counts)
        _add(totals.setdefault("received_by_kind", {}), by_kind)
        totals["most_days_past_deadline"] = max(totals.get("most_days_past_deadline", 0), most_late)
        if scope.is_platform and counts["open_past_deadline"]:
            per_institution.append({"institution": tenant.slug, "open_past_deadline": counts["open_past_deadline"]})
    if not totals:
        totals = {"received": 0, "received_by_kind": {}, "most_days_past_deadline": 0}
    found: dict[str, Any] = {"totals": totals}
    if scope.is_platform:
        found["institutions_past_deadline"] = per_institution
    return found


def backups_and_drills(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    with platform_session(db) as session:
        return backups.monthly(session, month.start, month.end, scope.tenant_id)


def alerts(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    with platform_session(db) as session:
        return alerts_summary.monthly(session, scope.tenant_id, month.start, month.end)


def blocked_addresses(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    # A block is the platform's (an address attacks the platform) and names no institution: every report shows
    # the platform-wide counts, and says so. "At end": at the month's end, or now while the month runs.
    with platform_session(db) as session:
        found = blocks_summary.monthly(session, month.start, min(month.end, now))
    return {"scope": "platform", **found}


def incidents(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    ids: set[UUID] | None = None
    sent = 0
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            sent += incidents_summary.notices_sent(session, month.start, month.end)
            if not scope.is_platform:
                ids = incidents_summary.affecting(session)
    with platform_session(db) as session:
        found = incidents_summary.monthly(session, month.start, month.end, ids)
    return {**found, "notices_sent": sent}


def file_integrity(db: Database, scope: Scope, month: Month, now: datetime) -> dict[str, Any]:
    # The platform's own files and host: an institution's report shows the platform's host-check status.
    with platform_session(db) as session:
        return {"scope": "platform", **host_checks.monthly(session, month.start, month.end)}


section("sign_ins", "Sign-ins and failures, per day", "identity", sign_ins)
section("blocked_addresses", "Blocked addresses (platform-wide)", "monitor (active response)", blocked_addresses)
section("alerts", "Alerts by severity", "monitor (alerts)", alerts)
section("incidents", "Incidents", "incidents", incidents)
section("entitlement_changes", "Entitlement changes", "access", entitlement_changes)
section("operator_grants", "Operator grants asked, decided and used", "access", operator_grants)
section("privacy_requests", "Privacy requests against their deadlines", "privacy", privacy_requests)
section("backups", "Backups and restore drills", "backup", backups_and_drills)
section("file_integrity", "File integrity and rootkit checks (platform)", "monitor (file integrity)", file_integrity)
