"""Signed Merkle checkpoints of every chain, made every N events or T minutes, and proofs against them.

A checkpoint extends the previous one's frontier with the events since, so sealing costs the new
events only. Before signing, the signer checks that the new events link from the previous
checkpoint's last hash (and that checkpoint's frontier folds to its signed root): it never signs
over a broken chain, it fails loudly instead. The checkpoint's own event (audit.checkpointed) is
appended to the chain after the events it seals, in the same transaction, and is sealed by the
next checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import text

from bookwarden.audit import merkle, signing
from bookwarden.audit.events import GENESIS, PLATFORM_CHAIN, Action, chain_hash
from bookwarden.audit.record import record
from bookwarden.audit.signing import Checkpoint, SigningKey
from bookwarden.core import faults
from bookwarden.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session

CHECKPOINT_JOB = "audit.checkpoints"
EVERY_EVENTS = 1000
EVERY = timedelta(minutes=10)

log = structlog.get_logger()

_CHECKPOINT_COLUMNS = "tenant_id, tree_size, root_hash, last_hash, frontier, signed_at, key_id, signature"


def _checkpoint(row: Any) -> Checkpoint:
    tenant_id, size, root, last, frontier, signed_at, key_id, signature = row
    return Checkpoint(
        tenant_id,
        size,
        bytes(root),
        bytes(last),
        tuple(bytes(h) for h in frontier),
        signed_at,
        key_id,
        bytes(signature),
    )


def list_checkpoints(session: TenantSession) -> list[Checkpoint]:
    """Every checkpoint of the chain in context, oldest first."""
    rows = session.execute(
        text(f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE tenant_id = :t ORDER BY tree_size"),  # noqa: S608
        {"t": session.tenant_id},
    )
    return [_checkpoint(row) for row in rows]


def latest_checkpoint(session: TenantSession) -> Checkpoint | None:
    row = session.execute(
        text(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE tenant_id = :t "  # noqa: S608
            "ORDER BY tree_size DESC LIMIT 1"
        ),
        {"t": session.tenant_id},
    ).first()
    return _checkpoint(row) if row is not None else None


def get_checkpoint(session: TenantSession, tree_size: int) -> Checkpoint:
    row = session.execute(
        text(f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE tenant_id = :t AND tree_size = :n"),  # noqa: S608
        {"t": session.tenant_id, "n": tree_size},
    ).first()
    if row is None:
        raise NotFound(f"no checkpoint of size {tree_size} in this chain")
    return _checkpoint(row)


def chain_head(session: TenantSession) -> tuple[int, bytes] | None:
    row = session.execute(
        text("SELECT seq, hash FROM audit_heads WHERE tenant_id = :t"), {"t": session.tenant_id}
    ).first()
    return (row.seq, bytes(row.hash)) if row is not None else None


def segment_boundary(session: TenantSession) -> tuple[int, bytes, datetime] | None:
    """The newest dropped segment: last seq dropped, its chain hash, when."""
    row = session.execute(
        text(
            "SELECT upto_seq, last_hash, dropped_at FROM audit_segment_drops WHERE tenant_id = :t "
            "ORDER BY upto_seq DESC LIMIT 1"
        ),
        {"t": session.tenant_id},
    ).first()
    return (row.upto_seq, bytes(row.last_hash), row.dropped_at) if row is not None else None


def make_checkpoint(
    session: TenantSession,
    key: SigningKey,
    *,
    every_events: int | None = None,
    every: timedelta | None = None,
    now: datetime | None = None,
    actor: Principal | None = None,
) -> Checkpoint | None:
    """Seal the chain in context up to its head; None when there is nothing new (or it is not due).

    With `every_events` / `every`, only when that many events are waiting or the oldest waiting one
    is that old; without them, whenever there is a new event.
    """
    chain = session.tenant_id
    head = chain_head(session)
    previous = latest_checkpoint(session)
    if previous is not None:
        problem = previous.frontier_problem()
        if problem is None and previous.key_id == key.key_id:
            problem = signing.TrustedKeys(key.public).check(previous)
        if problem is not None:
            raise IntegrityFailure(
                f"audit chain {chain}: the checkpoint at size {previous.tree_size}: {problem}; "
                "refusing to extend it (run bookwarden audit verify)"
            )
        base, base_hash = previous.tree(), previous.last_hash
    else:
        base, base_hash = merkle.Frontier(), GENESIS
    if head is None or head[0] <= base.size:
        return None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if (every_events is not None or every is not None) and not _due(
        session, base.size, head[0], now, every_events, every
    ):
        return None
    frontier, last_hash = _extend(session, base, base_hash, head[0])
    if last_hash != head[1]:
        raise IntegrityFailure(f"audit chain {chain}: the head's hash differs from event {head[0]}'s; refusing to sign")
    checkpoint = signing.sign(key, chain, frontier, last_hash, now)
    faults.point("checkpoint.signed")
    inserted = session.execute(
        text(
            f"INSERT INTO audit_checkpoints ({_CHECKPOINT_COLUMNS}) "  # noqa: S608
            "VALUES (:t, :n, :root, :last, :frontier, :at, :key_id, :signature) "
            "ON CONFLICT (tenant_id, tree_size) DO NOTHING RETURNING tree_size"
        ),
        {
            "t": chain,
            "n": checkpoint.tree_size,
            "root": checkpoint.root_hash,
            "last": checkpoint.last_hash,
            "frontier": list(checkpoint.frontier),
            "at": checkpoint.signed_at,
            "key_id": checkpoint.key_id,
            "signature": checkpoint.signature,
        },
    ).first()
    if inserted is None:
        return None  # another worker sealed the same size meanwhile
    faults.point("checkpoint.inserted")
    record(
        session,
        Action.AUDIT_CHECKPOINTED,
        ("audit_chain", chain),
        details={"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash.hex(), "key_id": key.key_id},
        actor=actor,
    )
    return checkpoint


def _due(session, sealed: int, head: int, now: datetime, every_events: int | None, every: timedelta | None) -> bool:
    if every_events is not None and head - sealed >= every_events:
        return True
    oldest = session.execute(
        text("SELECT occurred_at, action FROM audit_events WHERE tenant_id = :t AND seq = :s"),
        {"t": session.tenant_id, "s": sealed + 1},
    ).first()
    if oldest is not None and head - sealed == 1 and oldest.action == Action.AUDIT_CHECKPOINTED:
        # Only the previous seal's own event: sealing it would record another, every T minutes, for
        # ever, on every idle chain. It is sealed with the next real event.
        return False
    if every is None:
        return False
    return oldest is None or oldest.occurred_at <= now - every


def _extend(session, base: merkle.Frontier, base_hash: bytes, upto: int) -> tuple[merkle.Frontier, bytes]:
    """The frontier over events base.size+1..upto, each checked to link to the one before."""
    builder = merkle.TreeBuilder(base)
    prev, expected = base_hash, base.size + 1
    rows = session.execute(
        text(
            "SELECT seq, body_digest, prev_hash, hash FROM audit_events "
            "WHERE tenant_id = :t AND seq > :base AND seq <= :upto ORDER BY seq"
        ),
        {"t": session.tenant_id, "base": base.size, "upto": upto},
        execution_options={"yield_per": 5000},  # a server-side cursor: the first seal of a long chain streams
    )
    for seq, digest, prev_hash, stored_hash in rows:
        if seq != expected or bytes(prev_hash) != prev or chain_hash(prev, seq, bytes(digest)) != bytes(stored_hash):
            raise IntegrityFailure(
                f"audit chain {session.tenant_id} is broken at seq {expected}; refusing to sign "
                "it (run bookwarden audit verify)"
            )
        prev = bytes(stored_hash)
        builder.append(prev)
        expected += 1
    if expected != upto + 1:
        raise IntegrityFailure(
            f"audit chain {session.tenant_id} is broken at seq {expected}: event missing; refusing to sign it"
        )
    return builder.frontier(), prev


def chain_ids(db: Database) -> list[UUID]:
    """The platform chain and every institution's (one chain per row of `tenants`, in their order).

    Read by SQL, not through the tenancy area, which builds on this one."""
    with platform_session(db) as session:
        tenants = session.scalars(text("SELECT id FROM tenants ORDER BY created_at, slug"))
        return [PLATFORM_CHAIN, *tenants]


def checkpoint_all(
    db: Database,
    key: SigningKey,
    *,
    every_events: int | None = EVERY_EVENTS,
    every: timedelta | None = EVERY,
    actor: Principal = SYSTEM,
) -> list[Checkpoint]:
    """A checkpoint of every chain that is due, each in its own tenant session.

    A broken chain does not stop the others from being sealed; it fails the run afterwards.
    """
    made, broken = [], []
    for chain in chain_ids(db):
        try:
            with tenant_session(db, chain) as session:
                checkpoint = make_checkpoint(session, key, every_events=every_events, every=every, actor=actor)
        except IntegrityFailure as exc:
            log.error("audit.checkpoint_refused", tenant_id=str(chain), problem=exc.detail)
            broken.append(exc)
            continue
        if checkpoint is not None:
            made.append(checkpoint)
            faults.point("checkpoint.chain_sealed")
    if broken:
        raise broken[0]
    return made


# -- proofs ----------------------------------------------------------------------------------------


def _tree(session: TenantSession, size: int) -> merkle.Tree:
    """The chain's tree up to `size`: its leaves since the last dropped segment, and that boundary's frontier."""
    base = merkle.Frontier()
    drop = segment_boundary(session)
    if drop is not None:
        base = get_checkpoint(session, drop[0]).tree()
    if size < base.size:
        raise InvalidInput(f"events up to seq {base.size} were dropped; no proof reaches a tree of {size}")
    leaves = [
        bytes(h)
        for (h,) in session.execute(
            text("SELECT hash FROM audit_events WHERE tenant_id = :t AND seq > :base AND seq <= :n ORDER BY seq"),
            {"t": session.tenant_id, "base": base.size, "n": size},
        )
    ]
    if len(leaves) != size - base.size:
        raise IntegrityFailure(
            f"audit chain {session.tenant_id}: events are missing below seq {size} (run bookwarden audit verify)"
        )
    return merkle.Tree(leaves, base)


def inclusion_proof(session: TenantSession, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """Proof that event `seq` is in the signed tree of `tree_size` (default: the newest checkpoint)."""
    checkpoint = get_checkpoint(session, tree_size) if tree_size is not None else latest_checkpoint(session)
    if checkpoint is None or seq > checkpoint.tree_size:
        sealed = checkpoint.tree_size if checkpoint is not None else 0
        raise Conflict(
            f"event {seq} is not sealed by that checkpoint yet (it covers seq 1..{sealed}); "
            "run bookwarden audit checkpoint"
        )
    row = session.execute(
        text("SELECT id, hash FROM audit_events WHERE tenant_id = :t AND seq = :s"), {"t": session.tenant_id, "s": seq}
    ).first()
    if seq < 1 or row is None:
        raise NotFound(f"no event {seq} in this chain (never recorded, or its segment was dropped)")
    leaf = bytes(row.hash)
    try:
        path = _tree(session, checkpoint.tree_size).inclusion_proof(seq - 1, checkpoint.tree_size)
    except merkle.ProofUnavailable as exc:
        raise InvalidInput(str(exc)) from None
    if not merkle.verify_inclusion(leaf, seq - 1, checkpoint.tree_size, path, checkpoint.root_hash):
        raise IntegrityFailure(
            f"event {seq} does not prove against the signed checkpoint at {checkpoint.tree_size} "
            "(run bookwarden audit verify)"
        )
    return {
        "tenant_id": str(session.tenant_id),
        "seq": seq,
        "event_id": str(row.id),
        "leaf_index": seq - 1,
        "leaf": leaf.hex(),
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash.hex(),
        "inclusion_path": [h.hex() for h in path],
        "checkpoint": checkpoint.as_json(),
    }


def consistency_proof(session: TenantSession, old: int, new: int) -> dict[str, Any]:
    """Proof that the checkpoint of size `old` is a prefix of the one of size `new`."""
    if old > new:
        raise InvalidInput(f"--from {old} is after --to {new}")
    first, second = get_checkpoint(session, old), get_checkpoint(session, new)
    try:
        path = _tree(session, new).consistency_proof(old, new)
    except merkle.ProofUnavailable as exc:
        raise InvalidInput(str(exc)) from None
    if not merkle.verify_consistency(old, new, first.root_hash, second.root_hash, path):
        raise IntegrityFailure(
            f"the checkpoints at {old} and {new} are not consistent with the events (run bookwarden audit verify)"
        )
    return {
        "tenant_id": str(session.tenant_id),
        "first": first.as_json(),
        "second": second.as_json(),
        "consistency_path": [h.hex() for h in path],
    }
