"""Incidents for the security report and the live evidence.

The incidents and their timelines are the platform's (a platform session); which incidents concern an
institution, and the breach notices it was sent, are in its own rows (a tenant session: incident_impacts,
incident_notices). An institution's numbers are those of the incidents its impacts name, never another's.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bookwarden.db.session import TenantSession
from bookwarden.incidents.models import (
    Incident,
    IncidentEntry,
    IncidentImpact,
    IncidentNotice,
    IncidentState,
    NoticeAudience,
    NoticeDecision,
    Severity,
)
from bookwarden.incidents.service import ESCALATION_STEPS, TRIAGE_WITHIN

# The CISO's mail is queued with the incident and sent by the next worker pass: within this it is not late.
CISO_TOLD_WITHIN = timedelta(minutes=15)
# The escalation job runs every minute (jobs.py): a step due longer than this ago and not taken is overdue.
ESCALATION_GRACE = timedelta(minutes=5)


def affecting(session: TenantSession) -> set[UUID]:
    """The incidents that concern the institution in context (its impacts)."""
    return set(session.scalars(select(IncidentImpact.incident_id).where(IncidentImpact.tenant_id == session.tenant_id)))


def _scoped(query, incident_ids: Collection[UUID] | None):
    return query if incident_ids is None else query.where(Incident.id.in_(list(incident_ids)))


def monthly(
    session: Session, since: datetime, until: datetime, incident_ids: Collection[UUID] | None = None
) -> dict[str, object]:
    """{opened, closed, open_at_end, by_severity (of those opened), breaches (marked in the month)} over every
    incident, or those of `incident_ids` (an institution's)."""
    rows = session.scalars(
        _scoped(
            select(Incident).where(
                Incident.opened_at < until, or_(Incident.closed_at.is_(None), Incident.closed_at >= since)
            ),
            incident_ids,
        )
    ).all()
    opened = [i for i in rows if i.opened_at >= since]
    by_severity = {s.value: 0 for s in reversed(Severity)}
    for incident in opened:
        by_severity[incident.severity] += 1
    return {
        "opened": len(opened),
        "closed": sum(1 for i in rows if i.closed_at is not None and since <= i.closed_at < until),
        "open_at_end": sum(1 for i in rows if i.closed_at is None or i.closed_at >= until),
        "by_severity": by_severity,
        "breaches": sum(1 for i in rows if i.breach_marked_at is not None and since <= i.breach_marked_at < until),
    }


def notices_sent(session: TenantSession, since: datetime, until: datetime) -> int:
    """Breach notices sent in [since, until) to the institution in context or (on its instruction) its patrons."""
    return len(
        session.scalars(
            select(IncidentNotice.id).where(
                IncidentNotice.tenant_id == session.tenant_id,
                IncidentNotice.decision == NoticeDecision.SENT.value,
                IncidentNotice.sent_at >= since,
                IncidentNotice.sent_at < until,
            )
        ).all()
    )


def ciso_not_told(
    session: Session, since: datetime, now: datetime, incident_ids: Collection[UUID] | None = None
) -> list[str]:
    """Incidents opened since `since` (and longer than CISO_TOLD_WITHIN ago) whose CISO mail never went out."""
    told = select(IncidentEntry.incident_id).where(
        IncidentEntry.kind == "ciso_notified", IncidentEntry.details["about"].astext == "opened"
    )
    late = session.scalars(
        _scoped(
            select(Incident).where(
                Incident.opened_at >= since,
                Incident.opened_at < now - CISO_TOLD_WITHIN,
                Incident.id.not_in(told),
            ),
            incident_ids,
        ).order_by(Incident.opened_at)
    ).all()
    return [f"incident {i.id} opened {i.opened_at:%Y-%m-%d %H:%M} UTC: the CISO was not told" for i in late]


def overdue_escalations(session: Session, now: datetime, incident_ids: Collection[UUID] | None = None) -> list[str]:
    """Incidents still waiting for triage whose due escalation step was not taken (the escalation job stopped)."""
    waiting = session.scalars(
        _scoped(
            select(Incident).where(
                Incident.state == IncidentState.OPEN.value, Incident.escalation_step < ESCALATION_STEPS
            ),
            incident_ids,
        ).order_by(Incident.opened_at)
    ).all()
    found = []
    for incident in waiting:
        waited = now - incident.opened_at - ESCALATION_GRACE
        due = (
            min(ESCALATION_STEPS, int(waited / TRIAGE_WITHIN[Severity(incident.severity)]))
            if waited > timedelta()
            else 0
        )
        if due > incident.escalation_step:
            found.append(
                f"incident {incident.id} ({incident.severity}) waits for triage: escalation step {due} is due, "
                f"{incident.escalation_step} taken"
            )
    return found


def late_breach_notices(session: TenantSession, since: datetime, now: datetime) -> list[str]:
    """The institution in context's breach clocks not kept: past due with neither a notice nor a decision not to
    notify, or told (or decided) after the clock ran out for a breach it became aware of since `since`."""
    decided = {
        notice.incident_id: notice
        for notice in session.scalars(
            select(IncidentNotice).where(
                IncidentNotice.tenant_id == session.tenant_id,
                IncidentNotice.audience == NoticeAudience.INSTITUTION.value,
            )
        )
    }
    found = []
    for impact in session.scalars(
        select(IncidentImpact)
        .where(IncidentImpact.tenant_id == session.tenant_id, IncidentImpact.processor_due_at.is_not(None))
        .order_by(IncidentImpact.aware_at)
    ):
        notice = decided.get(impact.incident_id)
        when = impact.institution_told_at or (notice.decided_at if notice is not None else None)
        due = impact.processor_due_at
        if when is None and due < now:
            found.append(f"breach {impact.incident_id}: due {due:%Y-%m-%d %H:%M} UTC, neither told nor decided")
        elif when is not None and when > due and impact.aware_at >= since:
            found.append(f"breach {impact.incident_id}: told {when:%Y-%m-%d %H:%M} UTC, due {due:%Y-%m-%d %H:%M} UTC")
    return found
