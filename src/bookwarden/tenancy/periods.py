"""Enforcing a period, institution by institution and batch by batch: the loop the jobs that remove rows
past a published period share (privacy/periods.py lists every period and the job that enforces it).

A job names what it removes with `take(session, cutoff, limit)`: the owning area's service, which removes
(or anonymises) at most `limit` rows past `cutoff` in the institution of `session` and returns their ids.
Each batch is one transaction in that institution's own session (row-level security bounds it to the
institution), and the same transaction records one `retention.period_enforced` event: the job, the table,
the period, the cutoff, the count and the ids, never a value. So the trail says exactly what was committed.

Idempotent and resumable: the cutoff is fixed when the run starts, from the database clock; a run that
dies midway leaves whole batches behind it, and the next one (the job is retried, or runs on its schedule)
starts from what is left, which is only rows past their period. One institution's failure does not stop
the others; the job fails at the end, so the queue tries it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.tenancy.models import Tenant

if TYPE_CHECKING:
    from bookwarden.core.principal import Principal

BATCH = 500

log = structlog.get_logger()

# take(session, cutoff, limit) -> ids of the rows it removed (at most `limit`); cutoff None: a period that is
# not a time (the password history's depth).
Take = Callable[[TenantSession, datetime | None, int], Sequence[UUID]]


@dataclass(frozen=True)
class Period:
    """What one job enforces: where (the table its events name), how long (`keep`), how (`take`)."""

    job: str
    table: str
    keep: timedelta | None
    take: Take


class PeriodNotEnforced(RuntimeError):
    """Some institutions' runs failed; what they left is removed when the job is tried again."""


def enforce(
    db: Database,
    period: Period,
    *,
    actor: Principal,
    batch: int = BATCH,
    tenants: Iterable[UUID] | None = None,
) -> dict[UUID, int]:
    """Remove what is past `period` in every institution (or those named); rows removed per institution."""
    with platform_session(db) as session:
        as_of = session.scalar(select(func.now()))
        ids = list(tenants) if tenants is not None else institutions(session)
    cutoff = as_of - period.keep if period.keep is not None else None
    removed: dict[UUID, int] = {}
    failed = []
    for tenant_id in ids:
        try:
            removed[tenant_id] = _enforce_in(db, tenant_id, period, cutoff, actor, batch)
        except Exception as exc:
            log.error("period.enforcement_failed", job=period.job, tenant_id=str(tenant_id), error=type(exc).__name__)
            failed.append(tenant_id)
    if failed:
        raise PeriodNotEnforced(
            f"{period.job}: the run of {len(failed)} institution(s) failed; what is left goes when the job is "
            "tried again"
        )
    return removed


def institutions(session: Session) -> list[UUID]:
    """Every institution's id, oldest first (a platform session's look-up)."""
    return list(session.scalars(select(Tenant.id).order_by(Tenant.created_at, Tenant.id)))


def _enforce_in(
    db: Database, tenant_id: UUID, period: Period, cutoff: datetime | None, actor: Principal, batch: int
) -> int:
    total = 0
    while True:
        with tenant_session(db, tenant_id) as session:
            ids = list(period.take(session, cutoff, batch))
            if ids:
                details = {
                    "job": period.job,
                    "table": period.table,
                    "keep_days": period.keep.days if period.keep is not None else None,
                    "cutoff": cutoff.isoformat() if cutoff is not None else None,
                    "count": len(ids),
                    "ids": ids,
                }
                record(session, Action.PERIOD_ENFORCED, (period.table, None), actor=actor, details=details)
        total += len(ids)
        if len(ids) < batch:
            return total
