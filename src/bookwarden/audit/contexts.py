"""Where an event was done from, kept apart from the hashed event, and forgotten.

A format 2 event (audit/events.py) hashes a commitment to its source address and user agent; the values
and the event's own commitment key sit in `audit_event_contexts` (migration 0026), written only by the
append function. The app may read and delete them, never change one. They go:

- after the period: `forget_before` is the `take` of the period job (privacy/retention/jobs.py), which
  deletes contexts older than BOOKWARDEN_AUDIT_CONTEXT_DAYS (at most 90) in each chain;
- on erasure: `forget_events`, for the events a patron did or was the subject of (privacy/subjects);
- with their segment, when retention drops it (the drop function).

Deleting a context changes nothing the chain hashed, so `audit verify` passes as before; while a context
is kept, `mismatches` recomputes its commitment, so a value changed in place is caught.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import BigInteger, DateTime, Select, String, Uuid, delete, select, table
from sqlalchemy import column as col
from sqlalchemy.dialects.postgresql import BYTEA

from bookwarden.audit.events import FORMAT_CONTEXT_APART, context_commitment
from bookwarden.db.session import TenantSession

CONTEXTS_TABLE = "audit_event_contexts"
FORGET_JOB = "audit.forget_contexts"
# The period the records of processing publish (privacy/registry.py DEVICE_NETWORK); the setting
# BOOKWARDEN_AUDIT_CONTEXT_DAYS may only shorten it.
KEEP = timedelta(days=90)
PURGED = "purged"  # what searches and exports say of a format 2 event whose context is gone

# Read and delete only; the append function writes it.
contexts = table(
    CONTEXTS_TABLE,
    col("tenant_id", Uuid),
    col("seq", BigInteger),
    col("occurred_at", DateTime(timezone=True)),
    col("source_address", String),
    col("user_agent", String),
    col("commitment_key", BYTEA),
)
_events = table("audit_events", col("tenant_id", Uuid), col("seq", BigInteger), col("id", Uuid))


def forget_before(session: TenantSession, cutoff: datetime | None, limit: int) -> list[UUID]:
    """Delete at most `limit` contexts of the chain in context recorded before `cutoff`; the ids of their
    events (tenancy/periods.py `Take`: the batch's event names the events, never a value)."""
    chosen = (
        select(contexts.c.seq)
        .where(contexts.c.tenant_id == session.tenant_id, contexts.c.occurred_at < cutoff)
        .order_by(contexts.c.occurred_at)
        .limit(limit)
    )
    seqs = list(session.scalars(chosen))
    if not seqs:
        return []
    forget_events(session, seqs)
    return list(
        session.scalars(select(_events.c.id).where(_events.c.tenant_id == session.tenant_id, _events.c.seq.in_(seqs)))
    )


def forget_events(session: TenantSession, seqs: Select | list[int]) -> int:
    """Delete the contexts of the events of the chain in context at `seqs` (a SELECT of seq, or a list)."""
    removed = session.execute(
        delete(contexts).where(contexts.c.tenant_id == session.tenant_id, contexts.c.seq.in_(seqs))
    )
    return removed.rowcount


# What `audit verify` reads of each kept context: its event's format and commitment beside the values.
CHECK = (
    "SELECT c.seq, e.id::text, e.format, e.context_commitment, c.source_address, c.user_agent, c.commitment_key "
    "FROM audit_event_contexts c LEFT JOIN audit_events e ON e.tenant_id = c.tenant_id AND e.seq = c.seq "
    "WHERE c.tenant_id = %s AND c.seq > %s ORDER BY c.seq"
)


def mismatches(rows: Iterator[tuple]) -> Iterator[tuple[int, str | None, str]]:
    """(seq, event id, problem) for each kept context that its event did not commit to."""
    for seq, event_id, event_format, commitment, source_address, user_agent, key in rows:
        if event_id is None:
            yield seq, None, "a source address and user agent are kept for an event that is not in the chain"
        elif event_format != FORMAT_CONTEXT_APART or commitment is None:
            yield seq, event_id, "a source address and user agent are kept apart for an event that hashed none"
        elif not hmac.compare_digest(context_commitment(bytes(key), source_address, user_agent), bytes(commitment)):
            yield (
                seq,
                event_id,
                (
                    "the source address or user agent kept apart differs from what the event committed to "
                    "(a value was changed)"
                ),
            )
