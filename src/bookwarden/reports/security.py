"""The monthly security report: every registered section for one institution or for the platform.

Who reads which: an institution's own people with `reports.security.read` read their institution's report
(never another's: the scope is their principal's tenant); operators with `platform.reports.read` read the
platform's, or one institution's (counts and statuses only, no personal data, so no grant is needed: the
flagged exception docs/architecture.md names). Each build is recorded in the scope's chain.

Mailing: an institution's report goes to its designated security contacts through its outbox (security
mail); the platform's to management (BOOKWARDEN_MANAGEMENT_REPORT_EMAILS, else the operator alert
addresses) from a job, since it belongs to no institution's outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bookwarden.access.roles.notices import security_contacts
from bookwarden.audit import record as audit
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.jobs.service import enqueue
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import queue_mail
from bookwarden.reports import sections as _builtin  # noqa: F401 - registers the built-in sections
from bookwarden.reports.registry import SECTIONS, Month, Scope
from bookwarden.tenancy.service import get_tenant

FORMAT = "bookwarden-security-report-v1"
MAIL_MANAGEMENT_JOB = "reports.mail_management"
PLATFORM = "the platform"


def scope_for(db: Database, actor: Principal, tenant_id: UUID | None) -> Scope:
    """The scope `actor` may read: its own institution (reports.security.read), or, for an operator
    (platform.reports.read), the institution named or the platform."""
    if actor.tenant_id is not None:
        authorize(actor, Permission.REPORTS_SECURITY_READ)
        if tenant_id is not None and tenant_id != actor.tenant_id:
            raise Forbidden("an institution reads its own report and evidence only")
        tenant_id = actor.tenant_id
    else:
        authorize(actor, Permission.PLATFORM_REPORTS_READ)
    if tenant_id is None:
        return Scope(None, PLATFORM)
    with platform_session(db) as session:
        tenant = get_tenant(session, tenant_id)
    return Scope(tenant.id, tenant.name)


def build(db: Database, scope: Scope, month: Month, now: datetime | None = None) -> dict[str, Any]:
    """The report's numbers, section by section (a section not yet available says why)."""
    now = now or datetime.now(UTC)
    found = []
    for kind in SECTIONS.values():
        entry: dict[str, Any] = {"key": kind.key, "title": kind.title, "area": kind.area}
        if kind.provider is None:
            entry |= {"available": False, "reason": kind.unavailable}
        else:
            entry |= {"available": True, "data": kind.provider(db, scope, month, now)}
        found.append(entry)
    return {
        "format": FORMAT,
        "scope": scope.as_json(),
        "month": str(month),
        "period": {"from": month.start.isoformat(), "until": month.end.isoformat()},
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "complete": now >= month.end,
        "sections": found,
    }


def read_report(db: Database, actor: Principal, month: Month, tenant_id: UUID | None = None, fmt: str = "json"):
    """The report as `actor` may read it; recorded in its scope's chain."""
    scope = scope_for(db, actor, tenant_id)
    report = build(db, scope, month)
    with tenant_session(db, scope.tenant_id or PLATFORM_CHAIN) as session:
        details = {"month": str(month), "format": fmt, "tenant_id": scope.tenant_id}
        audit.record(session, Action.SECURITY_REPORT_BUILT, details=details, actor=actor)
    return report


def mail_report(db: Database, actor: Principal, month: Month, tenant_id: UUID | None = None, trigger="on demand"):
    """Mail the report to its designated contacts: an institution's security contacts (its outbox), or
    management (a job). Returns how many addresses it was queued for."""
    scope = scope_for(db, actor, tenant_id)
    report = build(db, scope, month)
    return queue_report_mail(db, scope, month, report, actor, trigger)


def queue_report_mail(db: Database, scope: Scope, month: Month, report: dict, actor: Principal, trigger: str) -> int:
    details = {"month": str(month), "trigger": trigger, "tenant_id": scope.tenant_id}
    if scope.is_platform:
        with tenant_session(db, PLATFORM_CHAIN) as session:
            enqueue(session, MAIL_MANAGEMENT_JOB, {"month": str(month)})
            audit.record(session, Action.SECURITY_REPORT_MAILED, details={**details, "recipients": None}, actor=actor)
        return 0
    with tenant_session(db, scope.tenant_id) as session:
        contacts = security_contacts(session)
        for address in contacts:
            queue_mail(
                session,
                to=address,
                subject=f"[{scope.name}] security report for {month}",
                template="security_report.txt",
                context=mail_context(report),
                category=MailCategory.SECURITY,
            )
        audit.record(
            session, Action.SECURITY_REPORT_MAILED, details={**details, "recipients": len(contacts)}, actor=actor
        )
    return len(contacts)


def mail_context(report: dict[str, Any]) -> dict[str, Any]:
    """What the mail says: each section's headline numbers (the page with charts is downloaded)."""
    lines = []
    for entry in report["sections"]:
        if not entry["available"]:
            lines.append((entry["title"], f"not yet available: {entry['reason']}"))
            continue
        lines.append((entry["title"], headline(entry["key"], entry["data"])))
    return {"institution": report["scope"]["name"], "month": report["month"], "sections": lines}


def headline(key: str, data: dict[str, Any]) -> str:
    """One line of numbers per section, for mail and the console."""
    if key == "sign_ins":
        t = data["totals"]
        return (
            f"{t['succeeded']} succeeded, {t['failed']} failed passwords, {t['second_factor_failed']} failed second "
            f"factors, {t['throttled']} throttled, {t['locked']} lockouts"
        )
    if key == "entitlement_changes":
        return f"{data['total']} changes" + (
            f" ({', '.join(f'{k} {v}' for k, v in data['by_action'].items())})" if data["by_action"] else ""
        )
    if key == "operator_grants":
        t = data["totals"]
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in t.items()) or "none"
    if key == "privacy_requests":
        t = data["totals"]
        return (
            f"{t.get('received', 0)} received, {t.get('answered_on_time', 0)} answered on time, "
            f"{t.get('answered_late', 0)} late, {t.get('open_past_deadline', 0)} open past their deadline"
        )
    if key == "backups":
        kinds = ", ".join(f"{kind}: {sum(c.values())}" for kind, c in data["backups"].items()) or "none"
        return f"backups {kinds}; drills passed {data['drills_passed']}, failed {data['drills_failed']}"
    if key == "alerts":
        severities = ", ".join(f"{k} {v}" for k, v in data["by_severity"].items() if v)
        return f"{data['total']} alerts" + (f" ({severities})" if severities else "")
    if key == "blocked_addresses":
        return (
            f"platform-wide: {data['blocked']} blocked, {data['lifted']} lifted, {data['expired']} expired, "
            f"{data['active_at_end']} active at the end"
        )
    if key == "incidents":
        return (
            f"{data['opened']} opened, {data['closed']} closed, {data['open_at_end']} open at the end; "
            f"{data['breaches']} breaches, {data['notices_sent']} notices sent"
        )
    if key == "file_integrity":
        return (
            f"platform: last scan {data['last_scan_at'] or 'never'}, {data['files_watched']} files watched, "
            f"{data['changes']} changes ({data['unexpected_changes']} unexpected), "
            f"{data['rootcheck_findings']} rootcheck findings"
        )
    return ", ".join(f"{k} {v}" for k, v in data.items() if isinstance(v, int | str))
