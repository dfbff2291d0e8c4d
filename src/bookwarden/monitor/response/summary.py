"""Address blocks for the security report: placed, lifted and expired in a month, active at its end, by the
rule that placed them. Blocks are the platform's (an address attacks the platform, not one institution): the
numbers are platform-wide whoever reads them. Ended blocks are forgotten after the repeat-offender look-back
(jobs.py), so a month older than that counts only what is still kept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bookwarden.monitor.response.models import AddressBlock, EndedWhy


def monthly(session: Session, since: datetime, until: datetime) -> dict[str, object]:
    rows = list(
        session.scalars(
            select(AddressBlock).where(
                AddressBlock.created_at < until,
                or_(AddressBlock.created_at >= since, AddressBlock.ended_at.is_(None), AddressBlock.ended_at >= since),
            )
        )
    )
    placed = [b for b in rows if b.created_at >= since]
    ended = [b for b in rows if b.ended_at is not None and since <= b.ended_at < until]
    by_reason: dict[str, int] = {}
    for block in placed:
        by_reason[block.rule] = by_reason.get(block.rule, 0) + 1
    return {
        "blocked": len(placed),
        "lifted": sum(1 for b in ended if b.ended_why == EndedWhy.UNBLOCKED),
        "expired": sum(1 for b in ended if b.ended_why == EndedWhy.EXPIRED),
        "active_at_end": sum(1 for b in rows if (b.ended_at is None or b.ended_at >= until) and b.expires_at >= until),
        "by_reason": dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))),
    }
