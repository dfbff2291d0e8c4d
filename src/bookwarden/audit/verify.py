"""Verification of audit chains: from the database (`bookwarden audit verify`) or from a bundle.

For each chain it checks that seq runs on without a gap from its start (genesis, the last dropped
segment's boundary, or a checkpoint given with --since), that every event's body digest is
recomputed from its stored fields, that every prev_hash and hash link, that every checkpoint is
signed by a trusted key, that its frontier folds to its root and that root and last hash match the
events, that the chain head matches the last event, and that no checkpoint covers events that are
gone, and that every source address and user agent still kept apart (format 2 events, audit/contexts.py)
is what its event committed to. It stops at the first broken event of a chain and names it: tenant, seq,
event id, what.

Speed matters (an auditor verifies millions of events): events are fetched through a server-side
cursor in batches, one batch ahead on a helper thread so PostgreSQL works while Python hashes, as
plain tuples of text and bytes; the canonical body is encoded by msgspec into the exact bytes
`Event.canonical()` makes (core/canonical.py `ascii_sorted_json_fast`: same key order, separators and
escapes for ASCII text). Any event the fast path cannot reproduce exactly (non-ASCII text, a DEL
character) is re-encoded by `Event.canonical()` itself, so the fast path can only be faster, never
decide differently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import structlog

from bookwarden.audit import checkpoints as store
from bookwarden.audit import contexts
from bookwarden.audit.events import FORMAT_CONTEXT_APART, GENESIS, Action, Event, Outcome
from bookwarden.audit.merkle import Frontier, TreeBuilder, subtree_sizes
from bookwarden.audit.record import record
from bookwarden.audit.signing import Checkpoint, TrustedKeys
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import ascii_sorted_json_fast
from bookwarden.core.errors import Forbidden, InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import tenant_session

log = structlog.get_logger()

if TYPE_CHECKING:
    from bookwarden.db.session import Database

BATCH = 5000
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class Finding:
    """The first thing wrong in a chain. `seq` is the first event concerned (None: a checkpoint alone)."""

    tenant_id: UUID
    seq: int | None
    event_id: str | None
    problem: str
    checkpoint: int | None = None

    def __str__(self) -> str:
        where = [f"tenant {self.tenant_id}"]
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.event_id is not None:
            where.append(f"event {self.event_id}")
        if self.checkpoint is not None:
            where.append(f"checkpoint {self.checkpoint}")
        return f"{', '.join(where)}: {self.problem}"


@dataclass(frozen=True)
class Start:
    """Where verification of a chain begins: after `seq`, whose chain hash is `hash`."""

    seq: int
    hash: bytes
    frontier: Frontier
    source: str  # genesis, dropped segment, checkpoint


GENESIS_START = Start(0, GENESIS, Frontier(), "genesis")


@dataclass
class ChainReport:
    tenant_id: UUID
    start: Start
    events: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU, its threads included (not the database's, nor child processes')
    finding: Finding | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.finding is None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        span = f"seq {self.start.seq + 1}..{self.last_seq}" if self.events else "no events"
        head = (
            f"tenant {self.tenant_id}: {self.events:,} events ({span}) from {self.start.source}, "
            f"{self.checkpoints} checkpoints"
        )
        return f"{head}: clean" if self.clean else f"{head}: TAMPERED: {self.finding}"


# An event as the verifier needs it: seq, event id, recomputed body digest, stored body digest,
# stored prev_hash, stored hash.
EventLink = tuple[int, str, bytes, bytes, bytes, bytes]


class ChainVerifier:
    """Checks one chain's events, fed in seq order, against its start and its signed checkpoints."""

    def __init__(self, tenant_id: UUID, start: Start, checkpoints: Sequence[Checkpoint], keys: TrustedKeys) -> None:
        self.report = ChainReport(tenant_id, start)
        self.tenant_id = tenant_id
        self.keys = keys
        self.expected = start.seq + 1
        self.prev = start.hash
        self.last_id: str | None = None
        self.before: bytes | None = None  # the hash two events back: tells an inserted event from a broken link
        self.builder = TreeBuilder(start.frontier)
        self._started, self._cpu_started = time.perf_counter(), time.process_time()
        later = []
        for checkpoint in sorted(checkpoints, key=lambda c: c.tree_size):
            if checkpoint.tree_size <= start.seq:
                # Its events are before the start (dropped, or verified earlier): its signature still holds.
                self._check_signed(checkpoint)
            else:
                later.append(checkpoint)
        self.pending = later
        self.merkle_end = later[-1].tree_size if later else 0  # no leaf hashing past the newest checkpoint

    @property
    def failed(self) -> bool:
        return self.report.finding is not None

    def fail(self, seq: int | None, event_id: str | None, problem: str, checkpoint: int | None = None) -> bool:
        if self.report.finding is None:
            self.report.finding = Finding(self.tenant_id, seq, event_id, problem, checkpoint)
        return False

    def fail_start(self, problem: str) -> None:
        self.fail(self.expected, None, problem, self.expected - 1)

    def _check_signed(self, checkpoint: Checkpoint) -> bool:
        self.report.checkpoints += 1
        if checkpoint.tenant_id != self.tenant_id:
            return self.fail(None, None, f"checkpoint belongs to tenant {checkpoint.tenant_id}", checkpoint.tree_size)
        problem = self.keys.check(checkpoint) or checkpoint.frontier_problem()
        if problem:
            return self.fail(None, None, f"checkpoint at size {checkpoint.tree_size}: {problem}", checkpoint.tree_size)
        return True

    def feed(self, events: Iterable[EventLink]) -> bool:
        """Check the next events; False once something is wrong (the rest is not looked at)."""
        if self.failed:
            return False
        expected, prev, count = self.expected, self.prev, 0
        merkle_end, builder = self.merkle_end, self.builder
        stack, leaves = builder._stack, builder.size  # TreeBuilder.append, inlined: it runs once per event
        boundary = self.pending[0].tree_size if self.pending else -1
        event_id = last_id = self.last_id
        before = self.before
        try:
            for seq, event_id, digest, stored_digest, prev_hash, stored_hash in events:
                if seq != expected:
                    if seq > expected:
                        return self.fail(
                            expected,
                            None,
                            f"event missing: the chain jumps from seq {expected - 1} to seq {seq} (event {event_id})",
                        )
                    return self.fail(seq, event_id, f"seq {seq} out of order, expected {expected}")
                if digest != stored_digest:
                    return self.fail(
                        seq, event_id, "the stored fields do not match the event's body digest (a field was changed)"
                    )
                if prev_hash != prev:
                    if prev_hash == before and seq > self.report.start.seq + 1:
                        # It links to the event two back: the one in between was slipped in.
                        return self.fail(
                            seq - 1,
                            last_id,
                            f"the event at seq {seq - 1} was inserted: seq {seq} links to seq {seq - 2}",
                        )
                    return self.fail(seq, event_id, "prev_hash does not link to the previous event's hash")
                link = _sha256(prev + seq.to_bytes(8, "big") + digest).digest()
                if link != stored_hash:
                    return self.fail(seq, event_id, "hash is not SHA-256(prev_hash || seq || body digest)")
                before, prev, last_id = prev, link, event_id
                count += 1
                expected = seq + 1
                if seq <= merkle_end:
                    node, carry = _sha256(b"\x00" + link).digest(), leaves
                    while carry & 1:
                        node = _sha256(b"\x01" + stack.pop() + node).digest()
                        carry >>= 1
                    stack.append(node)
                    leaves += 1
                    if seq == boundary:
                        self.prev, builder.size = prev, leaves
                        if not self._at_checkpoint(self.pending.pop(0), event_id):
                            return False
                        boundary = self.pending[0].tree_size if self.pending else -1
        finally:
            self.expected, self.prev, self.before, self.last_id = expected, prev, before, last_id
            builder.size = leaves
            self.report.events += count
            self.report.last_seq = expected - 1
        return True

    def _at_checkpoint(self, checkpoint: Checkpoint, event_id: str) -> bool:
        if not self._check_signed(checkpoint):
            return False
        size = checkpoint.tree_size
        ours = self.builder.frontier()
        if ours.hashes == checkpoint.frontier and self.prev == checkpoint.last_hash:
            return True
        # The events were rewritten with fresh hashes: the signed frontier says in which perfect
        # subtree the first difference lies.
        start = 0
        for width, mine, signed in zip(subtree_sizes(size), ours.hashes, checkpoint.frontier, strict=True):
            if mine != signed:
                return self.fail(
                    start + 1,
                    None,
                    f"events {start + 1}..{start + width} do not match what the "
                    f"checkpoint at size {size} signed: the chain was rewritten at or after seq "
                    f"{start + 1}",
                    size,
                )
            start += width
        return self.fail(
            size, event_id, f"the chain hash at seq {size} differs from the one the checkpoint signed", size
        )

    def finish(self, head: tuple[int, bytes] | None, head_before: tuple[int, bytes] | None = None) -> ChainReport:
        """After the last event: the chain head and checkpoints beyond the end.

        On a live chain, pass the head as read before the events were fetched (`head_before`) and
        after (`head`): events appended meanwhile then never pass for missing or forged ones.
        """
        report = self.report
        report.seconds = time.perf_counter() - self._started
        report.cpu_seconds = time.process_time() - self._cpu_started
        if self.failed:
            return report
        last = self.expected - 1
        before = head_before if head_before is not None else head
        if self.pending:
            first = self.pending[0]
            self.fail(
                last + 1,
                None,
                f"events missing: the checkpoint at size {first.tree_size} was signed over "
                f"{first.tree_size} events but the chain ends at seq {last}",
                first.tree_size,
            )
        elif head is None or before is None:
            if last > 0:
                self.fail(last, self.last_id, "the chain has events but no head")
        elif before[0] > last:
            self.fail(
                last + 1, None, f"events missing: the chain head is at seq {before[0]} but the events end at seq {last}"
            )
        elif head[0] < last:
            self.fail(
                head[0] + 1,
                None,
                f"events after the chain head (seq {head[0]}): appended outside bookwarden_audit_append",
            )
        elif last > 0:
            seen = head if head[0] == last else before if before[0] == last else None
            if seen is not None and seen[1] != self.prev:
                self.fail(last, self.last_id, "the chain head's hash differs from the last event's hash")
        return report


# -- from the database ---------------------------------------------------------------------------


class _Body(msgspec.Struct):
    """Event.canonical()'s fields in its (sorted) key order: ascii_sorted_json_fast keeps a Struct's order."""

    action: str
    actor_id: str | None
    actor_kind: str
    details: msgspec.Raw
    grant_id: str | None
    id: str
    occurred_at: str
    outcome: str
    request_id: str | None
    source_address: str | None
    target_id: str | None
    target_kind: str | None
    user_agent: str | None


class _BodyApart(msgspec.Struct):
    """The same for a format 2 event: the commitment in place of the address and user agent."""

    action: str
    actor_id: str | None
    actor_kind: str
    context_commitment: str | None
    details: msgspec.Raw
    grant_id: str | None
    id: str
    occurred_at: str
    outcome: str
    request_id: str | None
    target_id: str | None
    target_kind: str | None


_decode = msgspec.json.Decoder().decode
_DETAILS_CACHE_LIMIT = 65_536

# Text forms PostgreSQL gives back exactly as Event.canonical() writes them (UUIDs, UTC time with µs).
EVENT_COLUMNS = (
    "action, actor_id::text, actor_kind, details::text, grant_id::text, id::text, "
    """to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), outcome, request_id, """
    "source_address, target_id::text, target_kind, user_agent, seq, body_digest, prev_hash, hash, "
    "format, encode(context_commitment, 'hex')"
)
FORMAT_AT = 17  # where the format and the commitment sit in a row of EVENT_COLUMNS


def reference_event(row: Sequence[Any]) -> Event:
    """The event as Event itself holds it, from a row of EVENT_COLUMNS."""
    (
        action,
        actor_id,
        actor_kind,
        details,
        grant_id,
        id_,
        occurred_at,
        outcome,
        request_id,
        source_address,
        target_id,
        target_kind,
        user_agent,
    ) = row[:13]
    event_format, commitment = row[FORMAT_AT : FORMAT_AT + 2]
    if event_format == FORMAT_CONTEXT_APART and (source_address is not None or user_agent is not None):
        # A format 2 event keeps no address in the hashed table: one written there is a change.
        raise ValueError("a format 2 event with an address or user agent in its hashed row")
    return Event(
        id=UUID(id_),
        occurred_at=datetime.fromisoformat(occurred_at),
        actor_kind=actor_kind,
        actor_id=_uuid(actor_id),
        grant_id=_uuid(grant_id),
        action=action,
        target_kind=target_kind,
        target_id=_uuid(target_id),
        outcome=outcome,
        source_address=source_address,
        user_agent=user_agent,
        request_id=request_id,
        details=json.loads(details),
        format=event_format,
        context_commitment=bytes.fromhex(commitment) if commitment is not None else None,
    )


def reference_digest(row: Sequence[Any]) -> bytes:
    """The body digest through Event.canonical() itself."""
    return reference_event(row).body_digest()


def _reference_or_nothing(row: Sequence[Any]) -> bytes:
    """The reference digest; empty (matching no digest) for stored values Event cannot even hold,
    such as a year past 9999 or an infinite number: no event recorded through record() has them."""
    try:
        return reference_digest(row)
    except (ValueError, TypeError, OverflowError):
        return b""


def canonical_body(row: Sequence[Any]) -> bytes:
    """The exact bytes a row's body digest was computed over (fast path, or Event.canonical())."""
    try:
        details = msgspec.Raw(ascii_sorted_json_fast(_decode(row[3])))
    except (msgspec.DecodeError, msgspec.EncodeError):
        details = msgspec.Raw(b"null")  # not what record() wrote: the reference encoding below decides
    fast = _fast_body(row, details)
    encoded = ascii_sorted_json_fast(fast) if fast is not None else b"\x80"  # not ASCII: the reference decides
    if encoded.isascii() and _sha256(encoded).digest() == bytes(row[14]):
        return encoded
    return reference_event(row).canonical()


def _fast_body(row: Sequence[Any], details: msgspec.Raw) -> _Body | _BodyApart | None:
    """The msgspec form of a row's hashed body (None: a format 2 row holding an address, never valid)."""
    if row[FORMAT_AT] != FORMAT_CONTEXT_APART:
        return _Body(*row[:3], details, *row[4:13])
    if row[9] is not None or row[12] is not None:
        return None
    return _BodyApart(*row[:3], row[FORMAT_AT + 1], details, *row[4:9], row[10], row[11])


def _uuid(text: str | None) -> UUID | None:
    return UUID(text) if text is not None else None


def links(batches: Iterable[Sequence[tuple]]) -> Iterator[EventLink]:
    """EventLinks from batches of EVENT_COLUMNS rows, body digests recomputed."""
    details_cache: dict[str, msgspec.Raw] = {}
    encode, body, apart, sha256 = ascii_sorted_json_fast, _Body, _BodyApart, _sha256
    for rows in batches:
        for row in rows:
            (
                action,
                actor_id,
                actor_kind,
                details,
                grant_id,
                id_,
                occurred_at,
                outcome,
                request_id,
                source_address,
                target_id,
                target_kind,
                user_agent,
                seq,
                stored_digest,
                prev_hash,
                stored_hash,
                event_format,
                commitment,
            ) = row
            canonical_details = details_cache.get(details)
            if canonical_details is None:
                if len(details_cache) >= _DETAILS_CACHE_LIMIT:
                    details_cache.clear()
                # Sorted keys as Event.canonical() writes them; non-ASCII text fails isascii() below and
                # takes the reference path.
                try:
                    canonical_details = details_cache[details] = msgspec.Raw(encode(_decode(details)))
                except (msgspec.DecodeError, msgspec.EncodeError):  # 1e400: not what record() wrote
                    canonical_details = msgspec.Raw(b"null")  # fails the digest; the reference path decides
            if event_format != FORMAT_CONTEXT_APART:
                encoded = encode(
                    body(
                        action,
                        actor_id,
                        actor_kind,
                        canonical_details,
                        grant_id,
                        id_,
                        occurred_at,
                        outcome,
                        request_id,
                        source_address,
                        target_id,
                        target_kind,
                        user_agent,
                    )
                )
            elif source_address is None and user_agent is None:
                encoded = encode(
                    apart(
                        action,
                        actor_id,
                        actor_kind,
                        commitment,
                        canonical_details,
                        grant_id,
                        id_,
                        occurred_at,
                        outcome,
                        request_id,
                        target_id,
                        target_kind,
                    )
                )
            else:
                encoded = b"\x80"  # an address written into a format 2 row: the reference path refuses it
            digest = sha256(encoded).digest() if encoded.isascii() else _reference_or_nothing(row)
            if digest != stored_digest:
                digest = _reference_or_nothing(row)  # the fast path may differ only where it cannot escape alike
            yield seq, id_, digest, stored_digest, prev_hash, stored_hash


def prefetched(cursor: Any, size: int = BATCH) -> Iterator[list[tuple]]:
    """fetchmany() batches, the next one fetched on a helper thread while the caller works on this one."""
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(size)
                ready.put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed to the caller's thread
            ready.put(exc)

    worker = threading.Thread(target=fetch, name="audit-verify-fetch", daemon=True)
    worker.start()
    try:
        while True:
            rows = ready.get()
            if isinstance(rows, BaseException):
                raise rows
            if not rows:
                return
            yield rows
    finally:
        stop.set()
        while worker.is_alive():  # unblock a put() waiting for room, then let the thread end
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)
        worker.join()


def chain_start(session, tenant_id: UUID, since: int | None) -> tuple[Start, list[Checkpoint], list[str], str | None]:
    """Where to begin on `tenant_id`'s chain (in its tenant session): the start, the checkpoints to check,
    notes for the report, and what is wrong with the start itself (None when it holds)."""
    signed = store.list_checkpoints(session)
    by_size = {c.tree_size: c for c in signed}
    notes: list[str] = []
    start = GENESIS_START
    drop = store.segment_boundary(session)
    if drop is not None:
        upto, last_hash, dropped_at = drop
        notes.append(f"events 1..{upto} were dropped at the end of their retention period ({dropped_at:%Y-%m-%d})")
        boundary = by_size.get(upto)
        if boundary is None:
            return (
                Start(upto, last_hash, Frontier(), "dropped segment"),
                signed,
                notes,
                f"no checkpoint seals the dropped segment's boundary at seq {upto}",
            )
        if boundary.last_hash != last_hash:
            return (
                Start(upto, last_hash, Frontier(), "dropped segment"),
                signed,
                notes,
                f"the dropped segment's last hash differs from the one the checkpoint at {upto} signed",
            )
        start = Start(upto, last_hash, _frontier_or_empty(boundary), "dropped segment")
    if since is not None:
        checkpoint = by_size.get(since)
        if checkpoint is None:
            sizes = ", ".join(str(s) for s in sorted(by_size)[-5:]) or "none"
            raise InvalidInput(f"--since {since}: no checkpoint of tenant {tenant_id} has that size (latest: {sizes})")
        if since < start.seq:
            raise InvalidInput(f"--since {since}: events up to {start.seq} were dropped; start at or after it")
        start = Start(since, checkpoint.last_hash, _frontier_or_empty(checkpoint), f"checkpoint {since}")
        signed = [c for c in signed if c.tree_size >= since]
    # The start's own checkpoint (<= start.seq) has its signature and frontier checked by ChainVerifier.
    return start, signed, notes, None


def _frontier_or_empty(checkpoint: Checkpoint) -> Frontier:
    # A malformed frontier fails the checkpoint's own check before any event is fed.
    return checkpoint.tree() if checkpoint.frontier_problem() is None else Frontier()


# Called with (db, chain id, report) when a chain fails verification: the incidents area (above this one)
# registers here how it opens an incident (incidents/hooks.py). A listener that fails is logged, not raised:
# the verdict stands whatever happens to its follow-up.
TamperListener = Callable[["Database", UUID, ChainReport], None]
_tamper_listeners: list[TamperListener] = []


def on_tampered(listener: TamperListener) -> TamperListener:
    """Register `listener` to run when a chain fails verification (once, whatever the imports)."""
    if listener not in _tamper_listeners:
        _tamper_listeners.append(listener)
    return listener


def _tampered(db: Database, tenant_id: UUID, report: ChainReport) -> None:
    for listener in _tamper_listeners:
        try:
            listener(db, tenant_id, report)
        except Exception as exc:  # the finding is reported by the caller either way; this is its follow-up
            log.error("audit.tamper_listener_failed", chain=str(tenant_id), error=type(exc).__name__)


def verify_chain(db: Database, tenant_id: UUID, keys: TrustedKeys, since: int | None = None) -> ChainReport:
    """Verify one chain from the database (read through the app role, in the tenant's context); a chain that
    fails is handed to the listeners registered with `on_tampered` (an incident is opened)."""
    report = _verify_chain(db, tenant_id, keys, since)
    if not report.clean:
        _tampered(db, tenant_id, report)
    return report


def _verify_chain(db: Database, tenant_id: UUID, keys: TrustedKeys, since: int | None = None) -> ChainReport:
    with tenant_session(db, tenant_id) as session:
        start, signed, notes, problem = chain_start(session, tenant_id, since)
        verifier = ChainVerifier(tenant_id, start, signed, keys)
        verifier.report.notes.extend(notes)
        if problem is not None:
            verifier.fail_start(problem)
        head_before = store.chain_head(session)
        raw = session.connection().connection.driver_connection
        if not verifier.failed:
            with raw.cursor(name="bookwarden_audit_verify", binary=True) as cursor:
                cursor.itersize = BATCH
                cursor.execute(
                    f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant_id = %s AND seq > %s ORDER BY seq",  # noqa: S608
                    (tenant_id, start.seq),
                )
                verifier.feed(links(prefetched(cursor)))
        head = store.chain_head(session)  # read committed: a statement of its own sees later appends
        report = verifier.finish(head, head_before)
        if report.clean:
            # The chain holds: the addresses and user agents still kept apart must be what its events committed to.
            with raw.cursor(name="bookwarden_audit_verify_contexts", binary=True) as cursor:
                cursor.itersize = BATCH
                cursor.execute(contexts.CHECK, (tenant_id, start.seq))
                for seq, event_id, problem in contexts.mismatches(row for rows in prefetched(cursor) for row in rows):
                    verifier.fail(seq, event_id, problem)
                    break
    return report


def verify_own_chain(db: Database, actor: Principal, keys: TrustedKeys) -> ChainReport:
    """The institution's auditor (audit.verify) checks its own chain: the check the platform runs, recorded
    in that chain (when a tampered chain still takes the event)."""
    authorize(actor, Permission.AUDIT_VERIFY)
    if actor.tenant_id is None:
        raise Forbidden("an institution's chain is verified by its auditor, or at the console (audit verify)")
    report = verify_chain(db, actor.tenant_id, keys)
    record_verdict(db, actor.tenant_id, report, actor)
    return report


def record_verdict(db: Database, chain: UUID, report: ChainReport, actor: Principal | None = None) -> bool:
    """Record audit.verified in the chain checked. False when the chain, being tampered, refused it: the
    verdict stands all the same (a forged row may sit where the next event goes)."""
    finding = report.finding
    details = {
        "from_seq": report.start.seq + 1,
        "to_seq": report.last_seq,
        "events": report.events,
        "problem_seq": finding.seq if finding else None,
    }
    outcome = Outcome.SUCCEEDED if report.clean else Outcome.FAILED
    try:
        with tenant_session(db, chain) as session:
            record(session, Action.AUDIT_VERIFIED, ("audit_chain", chain), outcome=outcome, details=details,
                   actor=actor)  # fmt: skip
    except Exception:
        if report.clean:
            raise
        return False
    return True
