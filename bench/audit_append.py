"""Audit events appended per second through `audit.record`, against plain INSERTs of the same rows.

Chained side, exactly as the app writes them: `with tenant_session(db, t) as s: audit.record(s, ...)`
k times, then the session appends the queue through `bookwarden_audit_append` (chain head locked,
events numbered and hashed in the database) with the COMMIT in the same query.

Bare side: the same rows (same columns, the digest computed in Python as `record` does) INSERTed
into `bare_audit_events`, a copy of the table with the same keys and search indexes but no
row-level security, no trigger, no chain and a sequence for the number, in a transaction of the
same size on the SAME app pool. The indexes serve search, not the chain; both sides pay for them,
so the ratio is the cost of the chain alone.

The chained transactions take a transaction id first, as the change they record would, so
both sides wait for the disk at commit (a read's events would not; see migration 0013).

Both sides run with 4 writer threads on ONE tenant (the worst case for a chain: every writer
waits for the same head), in alternating rounds so drift hits both alike, for 1 and 10 events
per transaction: one event is a typical request, ten a bulk change.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import text

from bench import harness
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.tenancy import service as tenancy

NAME = "audit_append"
WRITERS = 4
TARGET_RATIO = 0.85  # one event per transaction, 4 writers (issue: audited actions at full speed)
TARGET_RATE = 5_000

BARE_TABLE = """
CREATE TABLE bare_audit_events (
    tenant_id UUID NOT NULL, seq BIGSERIAL, id UUID NOT NULL, occurred_at TIMESTAMPTZ NOT NULL,
    actor_kind VARCHAR(32) NOT NULL, actor_id UUID, grant_id UUID, action VARCHAR(64) NOT NULL,
    target_kind VARCHAR(64), target_id UUID, outcome VARCHAR(16) NOT NULL, source_address VARCHAR(64),
    user_agent VARCHAR(512), request_id VARCHAR(64), details JSONB NOT NULL, body_digest BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq), UNIQUE (tenant_id, id)
);
CREATE INDEX ON bare_audit_events (tenant_id, occurred_at);
CREATE INDEX ON bare_audit_events (tenant_id, actor_id, occurred_at);
CREATE INDEX ON bare_audit_events (tenant_id, target_id, occurred_at);
CREATE INDEX ON bare_audit_events (tenant_id, action, occurred_at);
GRANT SELECT, INSERT ON bare_audit_events TO bookwarden_app;
GRANT USAGE ON SEQUENCE bare_audit_events_seq_seq TO bookwarden_app;
"""
BARE_INSERT = text(
    "INSERT INTO bare_audit_events (tenant_id, id, occurred_at, actor_kind, actor_id, grant_id, action, "
    "target_kind, target_id, outcome, source_address, user_agent, request_id, details, body_digest) VALUES "
    "(:tenant_id, :id, :occurred_at, :actor_kind, :actor_id, :grant_id, :action, :target_kind, :target_id, "
    ":outcome, :source_address, :user_agent, :request_id, CAST(:details AS jsonb), :body_digest)"
)


def run(quick: bool) -> Iterator[dict[str, Any]]:
    transactions, rounds = (60, 2) if quick else (1_500, 3)  # per writer, per round
    with harness.bench_env(pool_size=WRITERS + 1) as env:
        with platform_session(env.db) as session:
            tenant_id = tenancy.create_tenant(session, env.db.keyring, env.home, "bench", "Bench University").id
        with env.owner_connection() as conn:
            conn.execute(BARE_TABLE)
        principal = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())
        context = audit.Context(principal, "192.0.2.10", "bench/1.0", None)

        def chained(batch: int) -> None:
            with audit.acting(context), tenant_session(env.db, tenant_id) as session:
                # Stands for the change these events record: a transaction that wrote something commits
                # synchronously (reads alone do not wait for the disk; see migration 0013), like the bare side.
                session.execute(text("SELECT pg_current_xact_id()"))
                for _ in range(batch):
                    audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), details={"fields": ["name"]})

        def bare(batch: int) -> None:
            with audit.acting(context):
                rows = [_bare_row(tenant_id, audit._event(Action.PATRON_VIEWED, ("patron", uuid.uuid4()),
                                                          audit.Outcome.SUCCEEDED, {"fields": ["name"]}, None))
                        for _ in range(batch)]
            with env.db.engine.begin() as conn:
                conn.execute(BARE_INSERT, rows)

        results: dict[int, dict[str, float]] = {}
        for batch in (1, 10):
            totals = {"chained": [0, 0.0], "bare": [0, 0.0]}
            for _ in range(rounds):
                for side, fn in (("chained", chained), ("bare", bare)):
                    seconds = _concurrently(fn, batch, transactions)
                    totals[side][0] += WRITERS * transactions * batch
                    totals[side][1] += seconds
            rates = {side: n / s for side, (n, s) in totals.items()}
            results[batch] = rates
            yield {
                "bench": NAME,
                "event": "measured",
                "events_per_transaction": batch,
                "writers": WRITERS,
                "chained_per_s": round(rates["chained"], 1),
                "bare_per_s": round(rates["bare"], 1),
                "ratio": round(rates["chained"] / rates["bare"], 3),
                "load_average_1m": harness.load_average(),
            }
        _check_chain(env, tenant_id)
        one = results[1]
        yield harness.summary(
            NAME,
            "chained_events_per_s_1_per_txn",
            one["chained"],
            one["bare"],
            "events/s",
            writers=WRITERS,
            tenants=1,
            ten_per_txn_chained=round(results[10]["chained"], 1),
            ten_per_txn_bare=round(results[10]["bare"], 1),
            ten_per_txn_ratio=round(results[10]["chained"] / results[10]["bare"], 3),
            target_ratio=TARGET_RATIO,
            meets_target=one["chained"] / one["bare"] >= TARGET_RATIO,
            target_rate=TARGET_RATE,
            server=env.server,
            load_average_1m=harness.load_average(),
        )


def _concurrently(fn: Callable[[int], None], batch: int, transactions: int) -> float:
    barrier = threading.Barrier(WRITERS + 1)
    errors: list[BaseException] = []

    def writer() -> None:
        barrier.wait()
        try:
            for _ in range(transactions):
                fn(batch)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def _bare_row(tenant_id: uuid.UUID, event) -> dict[str, Any]:
    row = audit._row(event)
    row["tenant_id"] = tenant_id
    row["body_digest"] = event.body_digest()
    row["details"] = json.dumps(event.details)
    return row


def _check_chain(env: harness.BenchEnv, tenant_id: uuid.UUID) -> None:
    """The chained side really chained: sequence contiguous, every predecessor distinct."""
    with tenant_session(env.db, tenant_id) as session:
        n, distinct, top = session.execute(
            text("SELECT count(*), count(DISTINCT prev_hash), max(seq) FROM audit_events")
        ).one()
    if not (n == distinct == top):
        raise RuntimeError(f"chain broken under concurrency: {n} events, {distinct} predecessors, max seq {top}")
