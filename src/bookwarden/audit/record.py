"""`record()`: the one way an action leaves its audit event, in the same transaction as the action.

`record` queues the event on the session; the session's context manager (`tenant_session`,
`platform_session`) appends the queue just before it commits, through the database function
that numbers and chains the events. Queuing to the end keeps the chain head's row lock for
the shortest time: from the append to the commit, not for the whole request; and the append and
the COMMIT go to the server together, in one round trip, so no client work is done while every
other writer of the chain waits (see `append_pending`). If the action
fails, its transaction rolls back and its events with it: no record of an action that did
not happen. Refusals are different: the refused action's transaction is gone, so
`record_now` writes them in a transaction of their own.

Who acts, from where and in which request comes from `acting()`: the HTTP middleware opens
it per request, authentication fills in the principal, commands and jobs open their own. The
address and user agent are not hashed into the event: the event hashes their commitment and the
append function keeps them apart, to be forgotten after a period (audit/contexts.py, events.py).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg import pq
from sqlalchemy import text
from sqlalchemy.orm import Session

from bookwarden.audit.events import (
    FORMAT_CONTEXT_APART,
    PLATFORM_CHAIN,
    Action,
    Event,
    Outcome,
    check_details,
    context_commitment,
    encode_body,
    new_commitment_key,
)
from bookwarden.db.session import Database, on_commit, run_simple, tenant_session

if TYPE_CHECKING:
    from bookwarden.core.principal import Principal

PENDING = "bookwarden.audit.pending"
USER_AGENT_LIMIT = 512
ANONYMOUS = "anonymous"


@dataclass
class Context:
    """Who is acting and from where. Mutable: authentication fills `principal` in mid-request."""

    principal: Principal | None = None
    source_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


_current: ContextVar[Context | None] = ContextVar("bookwarden_audit_context", default=None)


@contextmanager
def acting(context: Context) -> Iterator[Context]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current() -> Context:
    return _current.get() or Context()


def record(
    session: Session,
    action: Action,
    target: tuple[str, UUID | None] | None = None,
    *,
    outcome: Outcome = Outcome.SUCCEEDED,
    details: dict[str, Any] | None = None,
    actor: Principal | None = None,
) -> Event:
    """Queue the audit event of `action` on `session`; it is appended when the session commits.

    `details` carry ids, counts and field names: never passwords, tokens, keys or personal values.
    """
    event = _event(action, target, outcome, details or {}, actor)
    session.info.setdefault(PENDING, []).append(event)
    return event


def record_now(
    db: Database,
    action: Action,
    target: tuple[str, UUID | None] | None = None,
    *,
    outcome: Outcome,
    details: dict[str, Any] | None = None,
    actor: Principal | None = None,
    tenant_id: UUID | None = None,
) -> Event:
    """Record in a transaction of its own: for refusals, whose action's transaction rolled back."""
    principal = actor or current().principal
    chain = tenant_id or (principal.tenant_id if principal is not None else None) or PLATFORM_CHAIN
    with tenant_session(db, chain) as session:
        return record(session, action, target, outcome=outcome, details=details, actor=actor)


@on_commit
def append_pending(session: Session, chain: UUID, *, commit: bool) -> None:
    """Append the session's queued events to `chain` (the sessions' commit hook, registered here).

    `record` is in this module, so any process that queued an event has registered this hook: no
    event can be queued and then left behind at commit.

    The action's own writes are flushed first, before the append locks the chain head. With
    `commit`, the append and the COMMIT are sent as one query, in one round trip: the head is locked
    from the append until the commit is durable, and every other writer of the chain waits for exactly
    that long, so a client round trip in between (driver, ORM, the GIL among request threads) would be
    waited for by all of them. If the append fails, the COMMIT is not run and the action rolls back
    with it. SQLAlchemy's own commit then finds the transaction closed and sends nothing. Without
    `commit` (a test's outer transaction, which must not commit), only the append is sent.
    """
    session.flush()
    events: list[Event] = session.info.pop(PENDING, [])
    if not events:
        return
    payload = msgspec.json.encode([_row(e) for e in events])  # transport only: the digests are inside
    connection = session.connection()
    if not commit:
        connection.execute(APPEND, {"chain": chain, "events": payload.decode()})
        return
    # A single query takes no bound parameters: the chain id is a UUID's canonical text and the
    # events travel as a literal quoted by libpq (PQescapeLiteral), for the connection's encoding.
    if not isinstance(chain, UUID):
        raise TypeError("the chain is a tenant's UUID (or the platform's)")
    pgconn = connection.connection.driver_connection.pgconn
    events_literal = pq.Escaping(pgconn).escape_literal(payload)
    run_simple(
        connection,
        b"SELECT bookwarden_audit_append('%s', %s::jsonb); COMMIT" % (str(chain).encode(), events_literal),
    )


APPEND = text("SELECT bookwarden_audit_append(:chain, CAST(:events AS jsonb))")


def _event(
    action: Action, target: tuple[str, UUID | None] | None, outcome: Outcome, details: dict[str, Any], actor
) -> Event:
    context = current()
    principal = actor or context.principal
    target_kind, target_id = target if target is not None else (None, None)
    source_address = context.source_address
    user_agent = (context.user_agent or "")[:USER_AGENT_LIMIT].replace("\x00", "") or None
    # The address and user agent are kept apart (audit_event_contexts), the event hashing their commitment.
    key = commitment = None
    if source_address is not None or user_agent is not None:
        key = new_commitment_key()
        commitment = context_commitment(key, source_address, user_agent)
    return Event(
        id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        actor_kind=principal.kind.value if principal is not None else ANONYMOUS,
        actor_id=principal.id if principal is not None else None,
        grant_id=principal.grant_id if principal is not None else None,
        action=Action(action).value,
        target_kind=target_kind,
        target_id=target_id,
        outcome=Outcome(outcome).value,
        source_address=source_address,
        user_agent=user_agent,
        request_id=context.request_id,
        details=check_details(details),
        format=FORMAT_CONTEXT_APART,
        commitment_key=key,
        context_commitment=commitment,
    )


def _row(event: Event) -> dict[str, Any]:
    """What the append function is sent: the hashed body, its digest, and what it keeps apart."""
    row = event.body()
    row["body_digest"] = hashlib.sha256(encode_body(row)).hexdigest()
    row["format"] = event.format
    row["source_address"] = event.source_address
    row["user_agent"] = event.user_agent
    if event.commitment_key is not None:  # the append function stores these apart from the hashed event
        row["commitment_key"] = event.commitment_key.hex()
    return row
