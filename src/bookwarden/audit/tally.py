"""Counting the trail: how many events of some actions a chain holds in a period, per day or per action.

The areas that own an action read their monthly numbers through these (identity's sign-ins, access's
entitlement changes and grant uses), so a security report counts what the trail says happened, in the
chain of the session's context (an institution's, or the platform's), and nothing of another chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from uuid import UUID

from sqlalchemy import text

from bookwarden.db.session import TenantSession


def by_day(
    session: TenantSession, actions: Iterable[str], since: datetime, until: datetime
) -> dict[date, dict[str, int]]:
    """{day (UTC): {action: count}} of the chain in context, for events in [since, until)."""
    rows = session.execute(
        text(
            "SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, action, count(*) AS n FROM audit_events "
            "WHERE tenant_id = :t AND occurred_at >= :since AND occurred_at < :until AND action = ANY(:actions) "
            "GROUP BY 1, 2"
        ),
        {"t": session.tenant_id, "since": since, "until": until, "actions": [str(a) for a in actions]},
    )
    found: dict[date, dict[str, int]] = {}
    for day, action, n in rows:
        found.setdefault(day, {})[action] = n
    return found


def by_action(session: TenantSession, actions: Iterable[str], since: datetime, until: datetime) -> dict[str, int]:
    """{action: count} of the chain in context, for events in [since, until); actions never seen count 0."""
    wanted = [str(a) for a in actions]
    rows = session.execute(
        text(
            "SELECT action, count(*) FROM audit_events WHERE tenant_id = :t AND occurred_at >= :since "
            "AND occurred_at < :until AND action = ANY(:actions) GROUP BY action"
        ),
        {"t": session.tenant_id, "since": since, "until": until, "actions": wanted},
    )
    counted = dict(rows.all())
    return {action: counted.get(action, 0) for action in wanted}


def by_actor_kind(
    session: TenantSession, kinds: Iterable[str], since: datetime, until: datetime
) -> list[tuple[int, str, str, UUID | None, UUID | None, datetime]]:
    """(seq, action, outcome, actor id, grant id, occurred at) of every event by these kinds of actor."""
    rows = session.execute(
        text(
            "SELECT seq, action, outcome, actor_id, grant_id, occurred_at FROM audit_events WHERE tenant_id = :t "
            "AND occurred_at >= :since AND occurred_at < :until AND actor_kind = ANY(:kinds) ORDER BY seq"
        ),
        {"t": session.tenant_id, "since": since, "until": until, "kinds": [str(k) for k in kinds]},
    )
    return [tuple(row) for row in rows]


def recorded(session: TenantSession, action: str, since: datetime, details: dict[str, str]) -> bool:
    """Whether the chain in context holds an `action` event since `since` whose details include `details`:
    how a monthly duty knows it already did this month's work (the trail is its record)."""
    return bool(
        session.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = :t AND occurred_at >= :since "
                "AND action = :action AND details @> CAST(:details AS jsonb))"
            ),
            {"t": session.tenant_id, "since": since, "action": str(action), "details": json.dumps(details)},
        )
    )
