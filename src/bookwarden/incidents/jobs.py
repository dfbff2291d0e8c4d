"""The incidents area's duties: the CISO's mail, escalation by severity, lockout storms, reports to incidents.

- `incidents.mail` (queued when an incident opens or escalates): mails the CISO (BOOKWARDEN_CISO_EMAILS, or the
  operator alert addresses) straight over SMTP, as the drill alert does (platform mail, no institution's
  outbox); the queue retries a refused delivery, with the same Message-ID. A line of the timeline says it went.
- `incidents.escalate` (every minute): incidents still untriaged past their severity's time escalate, each step
  once (incidents/service.py `escalate_due`); so does each institution of a breach still neither told nor
  decided on at its processor deadline, once (incidents/affected.py `escalate_overdue_notices`); and each
  institution told but not yet acknowledging its notice is reminded, every 12 hours, three times at most, each
  reminder once (`remind_unacknowledged`): an acknowledged institution no more, the others still.
- `incidents.lockout_storm` (every 5 minutes): LOCKOUT_STORM accounts or more locked by failed sign-ins within
  LOCKOUT_WINDOW open an incident (one while it is open), naming the institutions whose accounts were locked.
- `incidents.open_from_report`: the incident a report of unauthorised access asked for (incidents/hooks.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import select, text

from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity.throttle import ACCOUNT_LOCK_AFTER
from bookwarden.incidents import affected, service
from bookwarden.incidents.hooks import REPORT_JOB
from bookwarden.incidents.models import IncidentCategory, IncidentSource, Severity
from bookwarden.jobs.service import handler, schedule
from bookwarden.notify.delivery import send_to_operators
from bookwarden.tenancy.models import Tenant

log = structlog.get_logger()

ESCALATE_JOB = "incidents.escalate"
LOCKOUT_JOB = "incidents.lockout_storm"
LOCKOUT_STORM = 20
LOCKOUT_WINDOW = timedelta(minutes=15)


@handler(service.MAIL_JOB)
def _mail(db: Database, payload: dict[str, Any]) -> None:
    """Tell the CISO (and, when escalating, the operators) of an incident: what, how severe, where to look."""
    settings = get_settings()
    kind, step = payload["kind"], payload.get("step")
    with platform_session(db) as session:
        incident = service.get(session, UUID(payload["incident_id"]))
    addresses = list(settings.ciso_addresses)
    if kind in ("escalated", "notice_overdue"):
        addresses = list(dict.fromkeys([*addresses, *settings.operator_alert_addresses]))
    if not addresses:
        log.error("incidents.ciso_unreachable", incident_id=str(incident.id), reason="no BOOKWARDEN_CISO_EMAILS")
    else:
        if kind == "notice_overdue":
            subject = f"Bookwarden: breach notice OVERDUE (the 24-hour promise has passed): {incident.title}"
        elif kind == "escalated":
            subject = (
                f"Bookwarden: incident ESCALATED (step {step}), {incident.severity}, not triaged: {incident.title}"
            )
        else:
            subject = f"Bookwarden: incident opened, {incident.severity}: {incident.title}"
        lines = [
            f"Incident {incident.id}: {incident.title}",
            f"Severity: {incident.severity}; category: {incident.category}; state: {incident.state}",
            f"Source: {incident.source}" + (f" ({incident.source_ref})" if incident.source_ref else ""),
            f"Opened (UTC): {incident.opened_at:%Y-%m-%d %H:%M}",
            "",
            incident.summary,
            "",
        ]
        if kind == "escalated":
            within = service.TRIAGE_WITHIN[Severity(incident.severity)]
            lines.append(f"It has waited more than {step * within} for triage. Triage it now:")
        if kind == "notice_overdue":
            lines.append("An affected institution is neither told nor decided on: notify it, or decline with a reason:")
            lines.append(f"  bookwarden incident notify {incident.id} --tenant T")
        lines.append(f"  bookwarden incident show {incident.id}")
        lines.append(f"  bookwarden incident triage {incident.id} --severity ... --category ...")
        send_to_operators(addresses, subject, "\n".join(lines), f"incident-{incident.id}-{kind}-{step or 0}")
    with platform_session(db) as session:
        service.ciso_notified(session, incident.id, kind, len(addresses), step)


@handler(ESCALATE_JOB)
def _escalate(db: Database, payload: dict[str, Any]) -> None:
    with platform_session(db) as session:
        service.escalate_due(session)
    affected.escalate_overdue_notices(db)
    affected.remind_unacknowledged(db)


@handler(LOCKOUT_JOB)
def _lockout_storm(db: Database, payload: dict[str, Any]) -> None:
    find_lockout_storm(db, int(payload.get("threshold", LOCKOUT_STORM)))


def find_lockout_storm(db: Database, threshold: int = LOCKOUT_STORM) -> UUID | None:
    """Open an incident when `threshold` accounts or more were locked by failed sign-ins in the window. The
    counters name no account and no institution: the institutions are those whose trail records a lockout
    (auth.account.locked) in the window, and the incident names them (each then sees it); the trail says whose
    accounts. Seen again while open, the incident gains the institutions newly reached."""
    with platform_session(db) as session:
        locked = session.execute(
            text(
                "SELECT count(*) FROM auth_failures WHERE scope = 'account' AND consecutive >= :lock_after "
                "AND last_failure_at > now() - :window"
            ),
            {"lock_after": ACCOUNT_LOCK_AFTER, "window": LOCKOUT_WINDOW},
        ).scalar_one()
        if locked < threshold:
            return None
        tenants = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
    institutions = []
    for tenant_id in tenants:
        with tenant_session(db, tenant_id) as session:
            if session.execute(_LOCKED_HERE, {"tenant": tenant_id, "window": LOCKOUT_WINDOW}).scalar_one():
                institutions.append(tenant_id)
    with platform_session(db) as session:
        incident = service.open_automatic(
            session,
            IncidentSource.LOCKOUT_STORM,
            title="A storm of account lockouts",
            summary=(
                f"{locked} accounts were locked by failed sign-ins in the last {LOCKOUT_WINDOW}, in "
                f"{len(institutions)} institution(s): a password-guessing or credential-stuffing campaign may be "
                "under way. See auth.account.locked in each institution's audit trail."
            ),
            severity=Severity.HIGH,
            category=IncidentCategory.UNAUTHORISED_ACCESS,
            source_ref=f"{locked} accounts",
            source_key="lockout_storm",
            institutions=institutions,
        )
        return incident.id


_LOCKED_HERE = text(
    "SELECT EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = :tenant AND action = 'auth.account.locked' "
    "AND occurred_at > now() - :window)"
)


@handler(REPORT_JOB)
def _open_from_report(db: Database, payload: dict[str, Any]) -> None:
    tenant_id, concern_id = UUID(payload["tenant_id"]), payload["concern_id"]
    with platform_session(db) as session:
        service.open_automatic(
            session,
            IncidentSource.REPORT,
            title="Reported: suspected unauthorised access to an account",
            summary=(
                f"A report of suspected unauthorised access to an account reached institution {tenant_id} "
                f"(report {concern_id}; what it says is the institution's, read with privacy.concerns.handle)."
            ),
            severity=Severity.MEDIUM,
            category=IncidentCategory.UNAUTHORISED_ACCESS,
            source_ref=f"{tenant_id}:{concern_id}",
            source_key=f"report:{tenant_id}:{concern_id}",
            institutions=[tenant_id],
            incident_id=UUID(payload["incident_id"]),
        )


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, ESCALATE_JOB, ESCALATE_JOB, timedelta(minutes=1))
        schedule(session, LOCKOUT_JOB, LOCKOUT_JOB, timedelta(minutes=5), {"threshold": LOCKOUT_STORM})
