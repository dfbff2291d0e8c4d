"""Walking, hashing and comparing files: the file-integrity scan itself, with no database.

A scan walks the roots (not following symbolic links), takes each entry's metadata (`lstat`) and hashes what it
must: every regular file on a full scan; otherwise only a file the baseline does not hold or whose inode, size,
mtime or ctime differ from the baseline's. The fast path is sound because ctime cannot be set back from user space:
whoever rewrites a file and restores its mtime (`touch -d`) still moves its ctime, so the file is hashed again.
A periodic full scan covers what the fast path trusts (the file system's own metadata).

Hashing streams each file through a fixed buffer per thread (memory stays bounded whatever the file size), on a
pool of threads: reading and BLAKE3 (for inputs of a few KiB and more) release the GIL.

What counts as a change (a finding): the kind of entry, the content hash, the size (of a file or a link), the
mode, the owner or the group. Timestamps or the inode alone (a `touch`, an editor saving the same bytes) are not:
the content and who may change it are the same; they are listed beside a real change as context.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import blake3

from bookwarden.monitor.events import Event, LogSource

ALGORITHMS = ("blake3", "sha256")
CHUNK = 1 << 20  # bytes read at a time: the memory one hashing thread holds
FILE, DIRECTORY, LINK, OTHER = "f", "d", "l", "o"
SIGNIFICANT = ("kind", "hash", "size", "mode", "owner", "group")
SOURCE = LogSource(product="bookwarden", services=frozenset({"fim"}))
ADDED, REMOVED, CHANGED = "fim.added", "fim.removed", "fim.changed"
TAMPERED = "fim.baseline_tampered"

_buffers = threading.local()


def _hasher(algorithm: str) -> Any:
    if algorithm == "blake3":
        return blake3.blake3()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")


def hash_bytes(data: bytes, algorithm: str) -> bytes:
    hasher = _hasher(algorithm)
    hasher.update(data)
    return hasher.digest()


def hash_file(path: str, algorithm: str) -> bytes:
    """The content hash of `path`, read in CHUNK pieces into this thread's one buffer."""
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    hasher = _hasher(algorithm)
    source = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while read := os.readv(source, (buffer,)):
            hasher.update(view[:read])
    finally:
        os.close(source)
    return hasher.digest()


class Entry(NamedTuple):
    """One file, folder or link as a scan found it (a tuple: tens of thousands are made per scan)."""

    path: str
    kind: str
    digest: bytes | None
    size: int
    mode: int
    uid: int
    gid: int
    inode: int
    mtime_ns: int
    ctime_ns: int

    def same_stat(self, found: os.stat_result) -> bool:
        """Whether the fast path may trust this entry's hash for `found` (nothing the kernel tracks moved)."""
        return (
            self.digest is not None
            and self.inode == _inode(found.st_ino)
            and self.size == found.st_size
            and self.mtime_ns == found.st_mtime_ns
            and self.ctime_ns == found.st_ctime_ns
        )

    def record(self) -> bytes:
        """This entry as stored in a baseline's pages and signed (service.py): ten fields, each ended by NUL,
        which no path holds (a newline may be in a name)."""
        digest = self.digest.hex() if self.digest is not None else ""
        return (
            f"{self.path}\0{self.kind}\0{digest}\0{self.size}\0{self.mode}\0{self.uid}\0{self.gid}\0{self.inode}"
            f"\0{self.mtime_ns}\0{self.ctime_ns}\0"
        ).encode()

    @classmethod
    def records(cls, data: bytes) -> list[Entry]:
        """The entries of stored records (`record` read back); ValueError when they are not whole."""
        fields = data.split(b"\0")
        if fields.pop() != b"" or len(fields) % 10:
            raise ValueError("records are cut short")
        found = []
        for at in range(0, len(fields), 10):
            path, kind, digest, *numbers = fields[at : at + 10]
            size, mode, uid, gid, inode, mtime, ctime = map(int, numbers)
            found.append(
                cls(path.decode(), kind.decode(), bytes.fromhex(digest.decode()) if digest else None, size, mode,
                    uid, gid, inode, mtime, ctime)
            )  # fmt: skip
        return found


def _inode(number: int) -> int:
    # Stored in a signed 64-bit column; some file systems hand out inode numbers above 2^63.
    return number - (1 << 64) if number >= 1 << 63 else number


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIRECTORY
    if stat.S_ISLNK(mode):
        return LINK
    return OTHER


def _display(path: str) -> str:
    """A path PostgreSQL can store: a name that is not UTF-8 keeps its bytes as escapes."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def walk(roots: Iterable[str], exclude: Iterable[str] = (), errors: list[str] | None = None):
    """(path, lstat) of every root and everything beneath, not following links; names in `exclude` left out."""
    skipped = frozenset(exclude)
    for root in roots:
        try:
            found = os.lstat(root)
        except FileNotFoundError:
            continue
        yield root, found
        if not stat.S_ISDIR(found.st_mode):
            continue
        pending = [root]
        while pending:
            folder = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.name in skipped:
                            continue
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        yield entry.path, info
                        if stat.S_ISDIR(info.st_mode):
                            pending.append(entry.path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError as exc:
                if errors is not None:
                    errors.append(f"{folder}: {exc.strerror}")


@dataclass(frozen=True)
class Finding:
    action: str  # ADDED, REMOVED, CHANGED (or TAMPERED: the baseline itself)
    path: str
    changed: tuple[str, ...] = ()  # what changed: hash, size, mode, owner, group, kind, inode, mtime, ctime
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"action": self.action, "path": self.path}
        if self.changed:
            found["changed"] = list(self.changed)
        if self.before:
            found["before"] = dict(self.before)
        if self.after:
            found["after"] = dict(self.after)
        return found


@dataclass
class ScanResult:
    entries: dict[str, Entry]
    findings: list[Finding]
    files: int = 0
    hashed: int = 0  # files whose content was read and hashed (the rest came through the fast path)
    hashed_bytes: int = 0
    touched: int = 0  # timestamps or inode changed, content, mode and owner the same: not a finding
    errors: list[str] = field(default_factory=list)


Progress = Callable[[int], None]  # bytes just hashed


def scan(
    roots: Iterable[str],
    algorithm: str,
    baseline: Mapping[str, Entry] | None = None,
    *,
    full: bool = False,
    exclude: Iterable[str] = (),
    threads: int | None = None,
    progress: Progress | None = None,
    total: Callable[[int], None] | None = None,
) -> ScanResult:
    """Walk, hash what must be hashed, and compare with `baseline` (None: no comparison, e.g. a new baseline).

    A pipeline: the walk hands each file to hash to the worker threads as it finds it, and this thread takes the
    digests back and makes the entries. `total` is told the number of bytes to hash once the walk is done (a
    progress bar's length); `progress`, the bytes of each file hashed.
    """
    _hasher(algorithm)  # an unknown algorithm is refused before any work
    known = baseline or {}
    errors: list[str] = []
    entries: dict[str, Entry] = {}
    jobs: queue.SimpleQueue[tuple[str, str, os.stat_result] | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[str, os.stat_result, bytes | None]] = queue.SimpleQueue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            path, shown, info = job
            try:
                digest: bytes | None = hash_file(path, algorithm)
            except FileNotFoundError:
                digest = None  # gone since the walk: it is not there
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                digest = None
            done.put((shown, info, digest))

    def keep(shown: str, info: os.stat_result, digest: bytes | None) -> None:
        entry = Entry(
            shown,
            _kind(info.st_mode),
            digest,
            info.st_size,
            info.st_mode,
            info.st_uid,
            info.st_gid,
            _inode(info.st_ino),
            info.st_mtime_ns,
            info.st_ctime_ns,
        )
        entries[shown] = entry

    workers = max(1, threads or min(8, (os.cpu_count() or 1) + 1))
    pool = [threading.Thread(target=work, name=f"fim-hash-{n}", daemon=True) for n in range(workers)]
    for thread in pool:
        thread.start()
    to_hash = to_hash_bytes = 0
    try:
        for path, info in walk([str(root) for root in roots], exclude, errors):
            shown = _display(path)
            kind = _kind(info.st_mode)
            if kind == FILE:
                before = known.get(shown)
                if full or before is None or not before.same_stat(info):
                    jobs.put((path, shown, info))
                    to_hash += 1
                    to_hash_bytes += info.st_size
                elif before.mode == info.st_mode and before.uid == info.st_uid and before.gid == info.st_gid:
                    entries[shown] = before  # nothing moved: the baseline's own entry (compare skips it at once)
                else:
                    keep(shown, info, before.digest)
            elif kind == LINK:
                try:
                    keep(shown, info, hash_bytes(os.fsencode(os.readlink(path)), algorithm))
                except FileNotFoundError:
                    continue
            else:
                keep(shown, info, None)
    finally:
        for _ in pool:
            jobs.put(None)
    if total is not None:
        total(to_hash_bytes)
    hashed_bytes = 0
    for _ in range(to_hash):
        shown, info, digest = done.get()
        if digest is None:
            continue  # vanished or unreadable (in `errors`): compared as absent
        hashed_bytes += info.st_size
        if progress is not None:
            progress(info.st_size)
        keep(shown, info, digest)
    for thread in pool:
        thread.join()
    result = ScanResult(entries, [], len(entries), to_hash, hashed_bytes, errors=errors)
    if baseline is not None:
        result.findings, result.touched = compare(baseline, entries)
    return result


def compare(baseline: Mapping[str, Entry], current: Mapping[str, Entry]) -> tuple[list[Finding], int]:
    """Findings (added, removed, changed; in path order) and the count of entries only touched."""
    findings: list[Finding] = []
    touched = 0
    for path, after in current.items():
        before = baseline.get(path)
        if before is after:
            continue  # the fast path handed back the baseline's own entry: nothing moved
        if before is None:
            findings.append(Finding(ADDED, path, after=_described(after)))
            continue
        changed = differences(before, after)
        if any(name in SIGNIFICANT for name in changed):
            old, new = _described(before), _described(after)
            shown = [name for name in changed if name in old]
            findings.append(
                Finding(CHANGED, path, tuple(changed), {n: old[n] for n in shown}, {n: new[n] for n in shown})
            )
        elif changed:
            touched += 1
    findings += [Finding(REMOVED, path, before=_described(baseline[path])) for path in baseline.keys() - current.keys()]
    findings.sort(key=lambda finding: finding.path)
    return findings, touched


def differences(before: Entry, after: Entry) -> list[str]:
    changed = []
    if before.kind != after.kind:
        changed.append("kind")
    if before.digest != after.digest:
        changed.append("hash")
    if before.size != after.size and after.kind != DIRECTORY:  # a folder's size follows its entries
        changed.append("size")
    if before.mode != after.mode:
        changed.append("mode")
    if before.uid != after.uid:
        changed.append("owner")
    if before.gid != after.gid:
        changed.append("group")
    if before.inode != after.inode:
        changed.append("inode")
    if before.mtime_ns != after.mtime_ns:
        changed.append("mtime")
    if before.ctime_ns != after.ctime_ns:
        changed.append("ctime")
    return changed


def _described(entry: Entry) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "hash": entry.digest.hex() if entry.digest is not None else None,
        "size": entry.size,
        "mode": f"{stat.S_IMODE(entry.mode):04o}",
        "owner": entry.uid,
        "group": entry.gid,
    }


def findings_as_events(
    findings: Iterable[Finding], *, time: datetime | None = None, host: str | None = None
) -> list[Event]:
    """Each finding as a monitor event (`service: fim`, field `action`), which the host rules match
    (monitor/rules/host.yml): what alert storage is fed after every scan."""
    moment = time or datetime.now(UTC)
    machine = host or os.uname().nodename
    events = []
    for finding in findings:
        what = f" ({', '.join(finding.changed)})" if finding.changed else ""
        message = f"{finding.action} {finding.path}{what}"
        fields: dict[str, Any] = {"action": finding.action, "path": finding.path}
        if finding.changed:
            fields["changed"] = list(finding.changed)
        if finding.before:
            fields["before"] = dict(finding.before)
        if finding.after:
            fields["after"] = dict(finding.after)
        events.append(Event(time=moment, source=SOURCE, message=message, raw=message, host=machine, fields=fields))
    return events
