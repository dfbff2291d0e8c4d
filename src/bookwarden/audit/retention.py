"""Audit retention: drop whole sealed segments whose newest event is past the retention period.

Only `bookwarden_audit_drop_segment` may delete audit rows, and only a segment that ends exactly at
a signed checkpoint and holds no event younger than the retention period; it remembers the
boundary's chain hash in audit_segment_drops. Verification then starts at that boundary, from the
boundary checkpoint's frontier, so every later event and checkpoint still verifies. Each drop is
itself recorded in the chain (audit.segment_dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import structlog
from sqlalchemy import text

from bookwarden.audit.checkpoints import SYSTEM, chain_ids, segment_boundary
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, TenantSession, tenant_session

RETENTION_JOB = "audit.retention"

log = structlog.get_logger()


@dataclass(frozen=True)
class Drop:
    tenant_id: UUID
    upto_seq: int
    events: int


def expired_segment(
    session: TenantSession, retention: timedelta, *, now: datetime | None = None, keep_from: int | None = None
) -> tuple[int, int] | None:
    """(previous boundary, end) of the longest sealed segment of the chain in context wholly past
    `retention`, or None. `keep_from`: the first seq that must stay whatever its age (a legal hold)."""
    cutoff = (now or datetime.now(UTC)) - retention
    chain = session.tenant_id
    previous = segment_boundary(session)
    dropped_upto = previous[0] if previous is not None else 0
    # The first event still within retention: every segment ending before it is past it. Walking seq
    # upwards from the boundary touches only events that are about to go.
    first_kept = session.execute(
        text(
            "SELECT seq FROM audit_events WHERE tenant_id = :t AND seq > :after AND occurred_at > :cutoff "
            "ORDER BY seq LIMIT 1"
        ),
        {"t": chain, "after": dropped_upto, "cutoff": cutoff},
    ).scalar()
    if keep_from is not None:
        first_kept = keep_from if first_kept is None else min(first_kept, keep_from)
    upto = session.execute(
        text(
            "SELECT max(tree_size) FROM audit_checkpoints WHERE tenant_id = :t AND tree_size > :after "
            "AND (CAST(:before AS bigint) IS NULL OR tree_size < :before)"
        ),
        {"t": chain, "after": dropped_upto, "before": first_kept},
    ).scalar()
    return None if upto is None else (dropped_upto, upto)


def drop_expired_segment(
    session: TenantSession,
    retention: timedelta,
    *,
    now: datetime | None = None,
    actor: Principal = SYSTEM,
    keep_from: int | None = None,
) -> Drop | None:
    """Drop the longest sealed segment of the chain in context that is wholly past `retention`
    (and ends before `keep_from`, when given)."""
    chain = session.tenant_id
    segment = expired_segment(session, retention, now=now, keep_from=keep_from)
    if segment is None:
        return None
    upto = segment[1]
    count = session.execute(
        text("SELECT bookwarden_audit_drop_segment(:t, :upto, make_interval(secs => :seconds))"),
        {"t": chain, "upto": upto, "seconds": retention.total_seconds()},
    ).scalar_one()
    record(
        session,
        Action.AUDIT_SEGMENT_DROPPED,
        ("audit_chain", chain),
        details={"upto_seq": upto, "events": count, "retention_days": retention.days},
        actor=actor,
    )
    log.info("audit.segment_dropped", tenant_id=str(chain), upto_seq=upto, events=count)
    return Drop(chain, upto, count)


def drop_expired_segments(db: Database, retention: timedelta, *, now: datetime | None = None) -> list[Drop]:
    """Every chain's expired sealed segment, each chain in its own tenant session."""
    drops = []
    for chain in chain_ids(db):
        with tenant_session(db, chain) as session:
            drop = drop_expired_segment(session, retention, now=now)
        if drop is not None:
            drops.append(drop)
    return drops
