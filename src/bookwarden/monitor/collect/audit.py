"""The platform's own events: every chain of the audit trail read from a saved sequence number.

Sign-ins and their failures, second factors, denials (`access.denied`, `auth.rejected`), requests for ids that do
not exist or belong to another institution (`request.failed` with `details.problem: not-found`) and every other
audited action are audit events already, so the trail is the one source: no event the platform does not record can
reach the rules, and none is missed for lack of a second hook.

No loss, no duplicate: a chain's events are numbered in commit order (the append holds the chain head's row lock
until its COMMIT, so event n+1 cannot be visible before event n). The reader asks each chain for `seq > saved` in
order, and the pipeline saves the seq of the last event the engine took. Each chain is read in its own tenant
session (row-level security shows a session one chain); the address and user agent come from the contexts kept
apart (audit/contexts.py) while they are kept.

The events become `Event`s as monitor/parse/jsonl.py reads a flat event: `action`, `outcome`, `source_address`,
`tenant_id`, `actor_kind`, `actor_id`, `grant_id`, `target_kind`, `target_id`, `details.*`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from uuid import UUID

from sqlalchemy import text

from bookwarden.audit.checkpoints import chain_ids
from bookwarden.db.session import Database, tenant_session
from bookwarden.monitor.events import Event
from bookwarden.monitor.parse import jsonl

BATCH = 1000
SOURCE_PREFIX = "audit:"

_READ = text(
    "SELECT e.seq, e.occurred_at, e.actor_kind, e.actor_id, e.grant_id, e.action, e.target_kind, e.target_id, "
    "e.outcome, coalesce(c.source_address, e.source_address) AS source_address, "
    "coalesce(c.user_agent, e.user_agent) AS user_agent, e.request_id, e.details "
    "FROM audit_events e LEFT JOIN audit_event_contexts c ON c.tenant_id = e.tenant_id AND c.seq = e.seq "
    "WHERE e.tenant_id = :chain AND e.seq > :after ORDER BY e.seq LIMIT :limit"
)
_HEAD = text("SELECT coalesce(max(seq), 0) FROM audit_events WHERE tenant_id = :chain")


def source_of(chain: UUID) -> str:
    return f"{SOURCE_PREFIX}{chain}"


class AuditReader:
    """Reads every chain after its saved seq. `saved` maps a chain's source name to its last seq taken."""

    def __init__(self, db: Database, saved: dict[str, int], start_at_head: bool = False) -> None:
        self.db = db
        self.after: dict[UUID, int] = {}
        self.saved = saved
        self.start_at_head = start_at_head

    def events(self, limit: int = BATCH) -> Iterator[tuple[Event, str, int]]:
        """(event, source, seq) for the events appended since the last call, chain by chain, oldest first."""
        for chain in chain_ids(self.db):
            after = self.after.get(chain)
            if after is None:
                after = self.saved.get(source_of(chain))
                if after is None:
                    after = self._head(chain) if self.start_at_head else 0
                self.after[chain] = after
            while True:
                with tenant_session(self.db, chain) as session:
                    rows = session.execute(_READ, {"chain": chain, "after": after, "limit": limit}).mappings().all()
                for row in rows:
                    after = row["seq"]
                    self.after[chain] = after
                    yield event_of(chain, row), source_of(chain), after
                if len(rows) < limit:
                    break

    def _head(self, chain: UUID) -> int:
        with tenant_session(self.db, chain) as session:
            return int(session.execute(_HEAD, {"chain": chain}).scalar_one())


def event_of(chain: UUID, row) -> Event:
    """An audit event as the flat JSON event monitor/parse/jsonl.py reads."""
    document = {
        "time": row["occurred_at"].isoformat(),
        "action": row["action"],
        "outcome": row["outcome"],
        "source_address": row["source_address"],
        "user_agent": row["user_agent"],
        "tenant_id": str(chain),
        "actor_kind": row["actor_kind"],
        "actor_id": _text(row["actor_id"]),
        "user": _text(row["actor_id"]),
        "grant_id": _text(row["grant_id"]),
        "target_kind": row["target_kind"],
        "target_id": _text(row["target_id"]),
        "request_id": row["request_id"],
        "seq": row["seq"],
        "details": row["details"] or {},
    }
    return jsonl.parse(json.dumps(document, separators=(",", ":")))


def _text(value) -> str | None:
    return None if value is None else str(value)
