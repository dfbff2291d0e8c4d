"""Data-subject requests against their deadlines, for the institution's monthly security report.

Counts only (kinds, states, days late), never who asked: received in the month, answered in it on time
or late, and those still open at the month's end, past their due date or not.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from bookwarden.db.session import TenantSession
from bookwarden.privacy.requests.models import PrivacyRequest, RequestState


def monthly(session: TenantSession, since: datetime, until: datetime, now: datetime) -> dict[str, object]:
    """Requests of the institution in context against their deadlines, for [since, until).

    "Open at the end" is judged at `until`, or `now` for the month in course."""
    end = min(until, now)
    requests = list(
        session.scalars(
            select(PrivacyRequest).where(
                PrivacyRequest.tenant_id == session.tenant_id,
                PrivacyRequest.received_at < until,
                or_(PrivacyRequest.completed_at.is_(None), PrivacyRequest.completed_at >= since),
            )
        )
    )
    requests = [r for r in requests if (done := _closed_at(r)) is None or done >= since]
    received = [r for r in requests if r.received_at >= since]
    answered = [r for r in requests if (done := _closed_at(r)) is not None and since <= done < until]
    still_open = [r for r in requests if (done := _closed_at(r)) is None or done >= end]
    overdue = [r for r in still_open if r.due_at <= end]
    by_kind: dict[str, int] = {}
    for r in received:
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
    return {
        "received": len(received),
        "received_by_kind": dict(sorted(by_kind.items())),
        "answered": len(answered),
        "answered_on_time": sum(1 for r in answered if _closed_at(r) <= r.due_at),
        "answered_late": sum(1 for r in answered if _closed_at(r) > r.due_at),
        "open_at_end": len(still_open),
        "open_past_deadline": len(overdue),
        "most_days_past_deadline": max(((end - r.due_at).days for r in overdue), default=0),
    }


def _closed_at(request: PrivacyRequest) -> datetime | None:
    if request.state == RequestState.COMPLETED:
        return request.completed_at
    if request.state == RequestState.DENIED:
        return request.decided_at
    return None
