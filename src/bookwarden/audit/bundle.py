"""Audit bundles: one chain exported for auditors, verifiable with no database.

A bundle is a .tar.gz holding
- `events.jsonl`: one event per line, shaped after OCSF 1.3 (class API Activity: activity, time,
  actor, src_endpoint, http_request, api, resources, metadata...). Its `unmapped` object holds what
  the chain hashed: `event` is the event's canonical encoding itself (the exact bytes of
  `Event.canonical()`: sorted keys, no whitespace, ASCII; the details are there only), with `seq`,
  `body_digest`, `prev_hash` and `hash`;
- `checkpoints.json`: the chain's signed checkpoints;
- `public-key`: the platform's checkpoint key (base64 raw Ed25519), as `bookwarden audit public-key`;
- `manifest.json`: tenant, where the events start (genesis, or a dropped segment's boundary), the
  chain head, counts.

`verify_bundle` runs the same chain verification as the database check and also requires every
line's OCSF fields to say exactly what its hashed event says, so nobody can edit what an auditor
reads without breaking a hash. Nothing here connects to a database (the export imports its session
code when called): a bundle is verified anywhere.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import multiprocessing
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from bookwarden.audit import checkpoints as store
from bookwarden.audit import signing
from bookwarden.audit.events import GENESIS
from bookwarden.audit.merkle import Frontier
from bookwarden.audit.verify import (
    BATCH,
    EVENT_COLUMNS,
    ChainReport,
    ChainVerifier,
    EventLink,
    Start,
    canonical_body,
    prefetched,
)
from bookwarden.core.canonical import ascii_sorted_json
from bookwarden.core.errors import IntegrityFailure, InvalidInput
from bookwarden.db.session import tenant_session

if TYPE_CHECKING:
    from bookwarden.db.session import Database

FORMAT = "bookwarden-audit-bundle"
VERSION = 1
OCSF_VERSION = "1.3.0"
EVENTS, CHECKPOINTS, PUBLIC_KEY, MANIFEST = "events.jsonl", "checkpoints.json", "public-key", "manifest.json"
_API_ACTIVITY, _APPLICATION_ACTIVITY = 6003, 6
_ACTIVITIES = {  # the verb ending an action name -> OCSF API Activity activity_id (and its name)
    "created": (1, "Create"),
    "added": (1, "Create"),
    "invited": (1, "Create"),
    "issued": (1, "Create"),
    "requested": (1, "Create"),
    "registered": (1, "Create"),
    "viewed": (2, "Read"),
    "listed": (2, "Read"),
    "looked_up": (2, "Read"),
    "exported": (2, "Read"),
    "searched": (2, "Read"),
    "proved": (2, "Read"),
    "verified": (2, "Read"),
    "key_viewed": (2, "Read"),
    "changed": (3, "Update"),
    "reset": (3, "Update"),
    "enabled": (3, "Update"),
    "disabled": (3, "Update"),
    "granted": (3, "Update"),
    "approved": (3, "Update"),
    "rejected": (3, "Update"),
    "suspended": (3, "Update"),
    "resumed": (3, "Update"),
    "rotated": (3, "Update"),
    "activated": (3, "Update"),
    "deleted": (4, "Delete"),
    "removed": (4, "Delete"),
    "revoked": (4, "Delete"),
    "segment_dropped": (4, "Delete"),
}
_OTHER = (99, "Other")
_STATUS = {"succeeded": (1, "Success"), "denied": (2, "Failure"), "failed": (2, "Failure")}


class EventFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The hashed fields of an event, as its canonical encoding holds them: the source address and user
    agent (format 1, events appended before migration 0026), or their commitment (format 2), whose values
    are kept apart and never exported in a bundle."""

    action: str
    actor_id: str | None
    actor_kind: str
    details: dict[str, Any]
    grant_id: str | None
    id: str
    occurred_at: str
    outcome: str
    request_id: str | None
    target_id: str | None
    target_kind: str | None
    source_address: str | None = None
    user_agent: str | None = None
    context_commitment: str | None = None


class Unmapped(msgspec.Struct, forbid_unknown_fields=True):
    """What the chain hashed: the canonical event itself (verbatim), its place and its links."""

    event: msgspec.Raw
    seq: int
    body_digest: str
    prev_hash: str
    hash: str


# The OCSF view of a line. Export encodes it; verification decodes a line into it (unknown keys refused)
# and compares it with the view rebuilt from the hashed event: one definition for both, compared field
# by field in C, whatever a JSON tool did to the line's layout. Absent and null are the same.


class _View(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class User(_View):
    type: str
    uid: str | None = None


class Policy(_View):
    uid: str
    name: str


class Authorization(_View):
    policy: Policy


class Actor(_View):
    user: User
    authorizations: list[Authorization] | None = None


class Request(_View):
    uid: str


class Api(_View):
    operation: str
    request: Request | None = None


class Product(_View):
    name: str
    vendor_name: str


class Metadata(_View):
    version: str
    product: Product
    log_name: str
    uid: str
    sequence: int
    tenant_uid: str


class Endpoint(_View):
    ip: str | None = None
    name: str | None = None  # "console", a proxy's label: not an address


class HttpRequest(_View):
    user_agent: str


class Resource(_View):
    type: str | None = None
    uid: str | None = None


class Line(_View, kw_only=True):
    class_uid: int
    category_uid: int
    activity_id: int
    type_uid: int
    severity_id: int
    status_id: int
    status_detail: str
    time: int
    actor: Actor
    api: Api
    metadata: Metadata
    src_endpoint: Endpoint | None = None
    http_request: HttpRequest | None = None
    resources: list[Resource] | None = None
    unmapped: Unmapped


_decode_line = msgspec.json.Decoder(Line).decode
_decode_fields = msgspec.json.Decoder(EventFields).decode
_encode = msgspec.json.Encoder().encode
_PRODUCT = Product("Bookwarden", "Bookwarden")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MEMO_LIMIT = 65_536


class _Memo(dict):
    """Parts of views that repeat across lines (actors, addresses, agents), built once. Bounded: a
    bundle of unique values fills it once and then builds each part afresh."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key):
        value = self.make(*key) if isinstance(key, tuple) else self.make(key)
        if len(self) < _MEMO_LIMIT:
            self[key] = value
        return value


def _make_head(action: str, outcome: str) -> tuple[int, int, str]:
    activity_id, _ = _ACTIVITIES.get(action.rsplit(".", 1)[-1], _OTHER)
    status_id, _ = _STATUS.get(outcome, (99, "Other"))
    return activity_id, status_id, outcome


def _make_actor(kind: str, actor_id: str | None, grant_id: str | None) -> Actor:
    grant = [Authorization(Policy(grant_id, "operator grant"))] if grant_id is not None else None
    return Actor(User(kind, actor_id), grant)


def _make_endpoint(address: str) -> Endpoint:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return Endpoint(name=address)
    return Endpoint(ip=address)


def _make_second(second: str) -> int:
    """Epoch milliseconds of a "YYYY-MM-DDTHH:MM:SS" UTC second (events of one second share it)."""
    return (datetime.fromisoformat(second).replace(tzinfo=UTC) - _EPOCH) // _MILLISECOND


_heads = _Memo(_make_head)
_actors = _Memo(_make_actor)
_endpoints = _Memo(_make_endpoint)
_agents = _Memo(HttpRequest)
_seconds = _Memo(_make_second)


def view(tenant_id: str, fields: EventFields, unmapped: Unmapped) -> Line:
    """An event's line, shaped after OCSF 1.3 (class API Activity); details stay in `unmapped`."""
    activity_id, status_id, outcome = _heads[fields.action, fields.outcome]
    occurred_at = fields.occurred_at
    return Line(
        class_uid=_API_ACTIVITY,
        category_uid=_APPLICATION_ACTIVITY,
        activity_id=activity_id,
        type_uid=_API_ACTIVITY * 100 + activity_id,
        severity_id=1,  # informational
        status_id=status_id,
        status_detail=outcome,
        time=_seconds[occurred_at[:19]] + int(occurred_at[20:23]),
        actor=_actors[fields.actor_kind, fields.actor_id, fields.grant_id],
        api=Api(fields.action, Request(fields.request_id) if fields.request_id is not None else None),
        metadata=Metadata(OCSF_VERSION, _PRODUCT, "audit", fields.id, unmapped.seq, tenant_id),
        src_endpoint=_endpoints[fields.source_address] if fields.source_address is not None else None,
        http_request=_agents[fields.user_agent] if fields.user_agent is not None else None,
        resources=[Resource(fields.target_kind, fields.target_id)]
        if fields.target_kind is not None or fields.target_id is not None
        else None,
        unmapped=unmapped,
    )


def render_line(tenant_id: str, fields: EventFields, unmapped: Unmapped) -> bytes:
    """An event's line as export writes it (without the newline)."""
    return _encode(view(tenant_id, fields, unmapped))


# -- export ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    tenant_id: UUID
    events: int
    first_seq: int
    last_seq: int
    checkpoints: int
    path: Path


def export_bundle(db: Database, tenant_id: UUID, path: Path, public_keys: Sequence[bytes]) -> ExportSummary:
    """Write `tenant_id`'s chain (from genesis or its dropped boundary) to a bundle at `path` (mode 0600)."""
    tenant = str(tenant_id)
    with tempfile.TemporaryDirectory(prefix="bookwarden-bundle-") as scratch:
        events_path = Path(scratch) / EVENTS
        count, first, last = 0, None, 0
        with tenant_session(db, tenant_id) as session:
            signed = store.list_checkpoints(session)
            head = store.chain_head(session)
            drop = store.segment_boundary(session)
            start_seq, start_hash = (drop[0], drop[1]) if drop is not None else (0, GENESIS)
            raw = session.connection().connection.driver_connection
            with open(events_path, "wb") as sink, raw.cursor(name="bookwarden_audit_export", binary=True) as cursor:
                cursor.itersize = BATCH
                cursor.execute(
                    f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant_id = %s AND seq > %s ORDER BY seq",  # noqa: S608
                    (tenant_id, start_seq),
                )
                for rows in prefetched(cursor):
                    for row in rows:
                        try:
                            body = canonical_body(row)
                        except (ValueError, TypeError, OverflowError):
                            raise IntegrityFailure(
                                f"event seq {row[13]} holds values no recorded event can have; "
                                "run bookwarden audit verify"
                            ) from None
                        seq, body_digest, prev_hash, chain_hash = row[13:17]
                        unmapped = Unmapped(
                            msgspec.Raw(body),
                            seq,
                            bytes(body_digest).hex(),
                            bytes(prev_hash).hex(),
                            bytes(chain_hash).hex(),
                        )
                        sink.write(render_line(tenant, _decode_fields(body), unmapped) + b"\n")
                        count += 1
                        first = first or seq
                        last = seq
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "ocsf_version": OCSF_VERSION,
            "tenant_id": tenant,
            "exported_at": datetime.now(UTC).isoformat(),
            "start": {"seq": start_seq, "hash": start_hash.hex()},
            "head": {"seq": head[0], "hash": head[1].hex()} if head is not None else None,
            "events": {"file": EVENTS, "count": count, "first_seq": first, "last_seq": last},
            "checkpoints": {"file": CHECKPOINTS, "count": len(signed)},
            # The current key first, then the retired ones that signed earlier checkpoints.
            "public_key": {"file": PUBLIC_KEY, "key_ids": [signing.key_id(k) for k in public_keys]},
        }
        members = {
            MANIFEST: json.dumps(manifest, indent=2).encode(),
            CHECKPOINTS: json.dumps([c.as_json() for c in signed], indent=2).encode(),
            PUBLIC_KEY: "".join(signing.encode_public_key(k) + "\n" for k in public_keys).encode(),
        }
        # 0600 from the first byte: events appended before migration 0026 name addresses and user agents.
        with (
            os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out,
            tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar,
        ):
            for name, data in members.items():
                _add(tar, name, io.BytesIO(data), len(data))
            with open(events_path, "rb") as events:
                _add(tar, EVENTS, events, events_path.stat().st_size)
    return ExportSummary(tenant_id, count, first or 0, last, len(signed), path)


def _add(tar: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(time.time())
    tar.addfile(info, data)


# -- verification --------------------------------------------------------------------------------


class _LineProblem(Exception):
    def __init__(self, seq: int | None, event_id: str | None, problem: str) -> None:
        super().__init__(problem)
        self.seq, self.event_id, self.problem = seq, event_id, problem

    def __reduce__(self):  # travels back from a worker process
        return _LineProblem, (self.seq, self.event_id, self.problem)


def verify_bundle(path: Path, pinned: Sequence[bytes] | None = None) -> tuple[ChainReport, list[str]]:
    """Verify a bundle file; trust only the `pinned` keys when given, else the bundle's own keys (noted).

    InvalidInput when the file is not a readable bundle at all; otherwise the report says clean or
    names the first broken event.
    """
    notes: list[str] = []
    with _members(path) as (small, events):
        manifest = _json(small, MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise InvalidInput(f"{path}: not a {FORMAT} version {VERSION}")
        try:
            tenant_id = UUID(manifest["tenant_id"])
            start_seq, start_hash = int(manifest["start"]["seq"]), bytes.fromhex(manifest["start"]["hash"])
            head = manifest["head"]
            head = (int(head["seq"]), bytes.fromhex(head["hash"])) if head is not None else None
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{path}: malformed manifest ({exc!r})") from None
        listed = _json(small, CHECKPOINTS)
        if not isinstance(listed, list):
            raise InvalidInput(f"{path}: {CHECKPOINTS} is not a list")
        signed = [signing.Checkpoint.from_json(c) for c in listed]
        lines = small[PUBLIC_KEY].decode(errors="replace").splitlines()
        bundled = [signing.decode_public_key(line) for line in lines if line.strip()]
        if not bundled:
            raise InvalidInput(f"{path}: {PUBLIC_KEY} holds no key")
        if pinned is None:
            ids = ", ".join(signing.key_id(k) for k in bundled)
            notes.append(
                f"trusting the bundle's own public keys {ids}; "
                "pin the platform's with --public-key to rule out a re-signed bundle"
            )
            keys = signing.TrustedKeys(*bundled)
        else:
            keys = signing.TrustedKeys(*pinned)
        start, problem = _start(start_seq, start_hash, signed)
        verifier = ChainVerifier(tenant_id, start, signed, keys)
        if problem is not None:
            verifier.fail_start(problem)
        if not verifier.failed:
            workers = _workers(manifest)
            tenant = str(tenant_id)
            links = _parallel_links(events, tenant, workers) if workers else _links(_lines(events), tenant)
            try:
                verifier.feed(links)
            except _LineProblem as exc:
                verifier.fail(exc.seq, exc.event_id, exc.problem)
    return verifier.finish(head), notes


def _start(seq: int, hash_: bytes, signed: list[signing.Checkpoint]) -> tuple[Start, str | None]:
    if seq == 0:
        return Start(0, GENESIS, Frontier(), "genesis"), None if hash_ == GENESIS else "the start hash is not genesis"
    boundary = next((c for c in signed if c.tree_size == seq), None)
    if boundary is None:
        return Start(seq, hash_, Frontier(), "dropped segment"), f"no checkpoint seals the start at seq {seq}"
    if boundary.last_hash != hash_:
        return Start(
            seq, hash_, Frontier(), "dropped segment"
        ), f"the start hash differs from the one the checkpoint at {seq} signed"
    frontier = boundary.tree() if boundary.frontier_problem() is None else Frontier()
    return Start(seq, hash_, frontier, "dropped segment"), None


def _lines(member: IO[bytes], chunk: int = 1 << 22) -> Iterator[bytes]:
    """Lines of a (decompressing) member, read in large blocks: readline() would decompress in small steps."""
    rest = b""
    while block := member.read(chunk):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


class _UnmappedOnly(msgspec.Struct):
    """A line read for its `unmapped` object alone (the rest skipped): the fast path's first step."""

    unmapped: Unmapped


_decode_unmapped = msgspec.json.Decoder(_UnmappedOnly).decode


def _links(lines: Iterable[bytes], tenant_id: str, first_number: int = 1) -> Iterator[EventLink]:
    """Each line's EventLink, its OCSF fields checked against the hashed event.

    Fast path: a line byte for byte as export writes it (rendered again from its hashed event and
    compared) needs no full decoding. Any other line, re-serialised or edited, takes the full path,
    which alone decides what is wrong with it.
    """
    sha256, fromhex, decode_unmapped, decode_fields = hashlib.sha256, bytes.fromhex, _decode_unmapped, _decode_fields
    seq = None
    for number, text in enumerate(lines, start=first_number):
        try:
            unmapped = decode_unmapped(text).unmapped
            raw = unmapped.event
            fields = decode_fields(raw)
            stored = fromhex(unmapped.body_digest)
            if sha256(raw).digest() == stored and render_line(tenant_id, fields, unmapped) == text:
                seq = unmapped.seq
                yield seq, fields.id, stored, stored, fromhex(unmapped.prev_hash), fromhex(unmapped.hash)
                continue
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
            pass
        link, seq = _full_link(text, tenant_id, number, seq)
        yield link


def _full_link(text: bytes, tenant_id: str, number: int, seq: int | None) -> tuple[EventLink, int]:
    """A line's EventLink the thorough way (strict decoding, the OCSF view compared field by field);
    `seq` is the previous line's, for naming where an unreadable line sits."""
    try:
        line = _decode_line(text)
        unmapped = line.unmapped
        seq, raw = unmapped.seq, unmapped.event
        fields = _decode_fields(raw)
        event_id = fields.id
        stored = bytes.fromhex(unmapped.body_digest)
        digest = hashlib.sha256(raw).digest()
        if digest != stored:  # the line may have been re-serialised (pretty-printed, reordered)
            digest = hashlib.sha256(_canonical(raw)).digest()
        link = (seq, event_id, digest, stored, bytes.fromhex(unmapped.prev_hash), bytes.fromhex(unmapped.hash))
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise _LineProblem(
            seq + 1 if seq is not None else None, None, f"line {number} of {EVENTS} is not a bundle event ({exc})"
        ) from None
    # Only an event whose hashed fields hold is worth comparing with its OCSF view; a changed field
    # is reported as such by the chain check.
    if digest == stored and line != view(tenant_id, fields, unmapped):
        raise _LineProblem(seq, event_id, "the OCSF fields of its line differ from the event that was hashed")
    return link, seq


# -- verification in parallel ----------------------------------------------------------------------
# Parsing a line, rebuilding its OCSF view and hashing its event is ~2/3 of the work and independent
# from line to line; only the chain links (each event's hash feeds the next) and the Merkle tree are
# sequential. So worker processes check blocks of lines and hand back their EventLinks, and this
# process feeds them, in order, to the same ChainVerifier: links across block boundaries are checked
# exactly as within a block, and the first problem found is the one the sequential path would name.

PARALLEL_FROM = 20_000  # events in the manifest; below, starting workers costs more than it saves
BLOCK = 1 << 21  # bytes of events.jsonl per task: thousands of lines, cut at a newline
_IN_FLIGHT = 3  # tasks queued per worker: enough to keep them busy, bounded memory


def _check_block(tenant_id: str, first_number: int, block: bytes) -> tuple[list[EventLink], _LineProblem | None]:
    """A worker's task: the EventLinks of a block of whole lines, up to the first line problem."""
    lines = block.split(b"\n")
    if lines[-1] == b"":  # the block ends with its last line's newline
        lines.pop()
    checked: list[EventLink] = []
    try:
        checked.extend(_links(lines, tenant_id, first_number))
    except _LineProblem as exc:
        return checked, exc
    return checked, None


def _blocks(member: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, block of whole lines) over the member, as `_lines` splits it."""
    number, rest = 1, b""
    while block := member.read(BLOCK):
        block = rest + block
        end = block.rfind(b"\n") + 1
        if end == 0:
            rest = block
            continue
        block, rest = block[:end], block[end:]
        yield number, block
        number += block.count(b"\n")
    if rest:
        yield number, rest


def _parallel_links(member: IO[bytes], tenant_id: str, workers: int) -> Iterator[EventLink]:
    """`_links` over the member, the lines checked by `workers` forked processes."""
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context)
    try:
        queued: deque = deque()
        last_seq = None
        blocks = _blocks(member)
        while True:
            while len(queued) < workers * _IN_FLIGHT:
                block = next(blocks, None)
                if block is None:
                    break
                queued.append(pool.submit(_check_block, tenant_id, *block))
            if not queued:
                return
            checked, problem = queued.popleft().result()
            yield from checked
            if checked:
                last_seq = checked[-1][0]
            if problem is not None:
                if problem.seq is None and last_seq is not None:
                    # The block's first line: its place follows the previous block's last event.
                    problem.seq = last_seq + 1
                raise problem
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _workers(manifest: dict) -> int:
    """Worker processes for a bundle: none for a small one, nor where forking is unsafe (threads running)."""
    try:
        count = int(manifest["events"]["count"])
    except (KeyError, TypeError, ValueError):
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if count < PARALLEL_FROM or cpus < 2 or not _fork_is_safe():
        return 0
    return min(cpus, 8)


def _fork_is_safe() -> bool:
    """A forked child gets only the calling thread: a lock another thread holds at that moment stays held."""
    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def _canonical(raw: msgspec.Raw) -> bytes:
    """A re-serialised line's event back in the form its body digest was computed over (Event.canonical())."""
    return ascii_sorted_json(json.loads(bytes(raw)))


_SMALL = (MANIFEST, CHECKPOINTS, PUBLIC_KEY)
_SMALL_LIMIT = 64 << 20  # a manifest, checkpoints and a key: anything larger is not a bundle


@contextmanager
def _members(path: Path) -> Iterator[tuple[dict[str, bytes], IO[bytes]]]:
    """The bundle's small members read whole, and events.jsonl as a stream.

    A gzip bundle laid out as export writes it (events last) is decompressed by a child process into
    a pipe and read as a tar stream: zlib holds the GIL while it inflates, so only another process
    takes that third of the work off the verifier's core. Any other layout is read by random access.
    """
    try:
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        if gzipped:
            with _inflating(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                small: dict[str, bytes] = {}
                for member in tar:
                    if member.name == EVENTS and all(name in small for name in _SMALL):
                        yield small, _extract(tar, member)
                        return
                    if member.name == EVENTS:
                        break
                    if member.name in _SMALL:
                        small[member.name] = _extract(tar, member).read(_SMALL_LIMIT)
        with tarfile.open(path, mode="r:*") as tar:
            members = {m.name: m for m in tar.getmembers()}
            missing = [name for name in (*_SMALL, EVENTS) if name not in members]
            if missing:
                raise InvalidInput(f"{path}: the bundle has no {', '.join(missing)}")
            small = {name: _extract(tar, members[name]).read(_SMALL_LIMIT) for name in _SMALL}
            yield small, _extract(tar, members[EVENTS])
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise InvalidInput(f"{path}: not a readable bundle ({exc})") from None


# Run by a fresh interpreter (-I: no site, no environment): gunzip a file to stdout; exit 3 if truncated.
_GUNZIP = """
import sys, zlib
source, out, inflater = open(sys.argv[1], "rb"), sys.stdout.buffer, zlib.decompressobj(31)
while block := source.read(1 << 20):
    while block:
        out.write(inflater.decompress(block))
        block = inflater.unused_data if inflater.eof else b""
        if block:
            inflater = zlib.decompressobj(31)
out.flush()
sys.exit(0 if inflater.eof else 3)
"""


@contextmanager
def _inflating(path: Path) -> Iterator[IO[bytes]]:
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script; the path is an argument
        [sys.executable, "-I", "-c", _GUNZIP, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=1 << 20,  # tar reads 10 KiB at a time: a large buffer saves system calls
    )
    try:
        yield child.stdout
        if child.wait() == 3:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
    finally:
        if child.poll() is None:  # the reader stopped early (a broken event): the rest is not needed
            child.kill()
        child.stdout.close()
        child.wait()


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    extracted = tar.extractfile(member)
    if extracted is None:
        raise InvalidInput(f"{member.name} in the bundle is not a file")
    return extracted


def _json(small: dict[str, bytes], name: str) -> Any:
    try:
        return json.loads(small[name])
    except KeyError:
        raise InvalidInput(f"the bundle has no {name}") from None
    except ValueError as exc:
        raise InvalidInput(f"{name} in the bundle is not JSON ({exc})") from None
