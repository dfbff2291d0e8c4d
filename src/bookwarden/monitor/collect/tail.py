"""A log file followed from a saved position, through restarts and rotation, losing and repeating no line.

The position is (device, inode, offset, fingerprint): the file's identity, the byte after the last complete line
handed on, and SHA-256 of its first `min(offset, FINGERPRINT_BYTES)` bytes. Cases:

- **restart**: the file at the path has the saved device and inode, is at least `offset` long and its first bytes
  hash to the fingerprint: go on at `offset`.
- **rotation by rename** (logrotate's default: the file becomes `auth.log.1`, a new `auth.log` is made): the path
  now names another inode. The old file is finished first, read to its end through the descriptor already open (or,
  after a restart, found again by its inode among the path's siblings), then the new one is followed from 0.
- **rotation by copy and truncate** (`copytruncate`): the same inode is now shorter than `offset`, or its first
  bytes changed: follow it again from 0. (Lines written between the copy and the truncation are lost to every
  reader of the file: logrotate says so; prefer rename rotation.)
- **a partial last line** (a writer mid-line) is not handed on until its newline arrives: the offset stays before
  it, so a restart reads it again whole. When a file is rotated away with a partial line at its end, that line is
  handed on as it is (it can never be finished).

A line is handed on with the position just after it; the pipeline saves that position only once the engine has
taken the line, so what was read and not yet analysed is read again after a crash, never skipped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FINGERPRINT_BYTES = 256
READ_CHUNK = 1 << 20
MAX_LINE = 1 << 20  # a "line" longer than this is cut and handed on, so one runaway writer cannot hold the file


@dataclass(frozen=True)
class FilePosition:
    device: int | None
    inode: int | None
    offset: int
    fingerprint: bytes | None


def fingerprint_of(fd: int, offset: int) -> bytes | None:
    size = min(offset, FINGERPRINT_BYTES)
    if size == 0:
        return None
    return hashlib.sha256(os.pread(fd, size, 0)).digest()


def end_of(path: Path) -> FilePosition | None:
    """The position after the last complete line of `path` as it is now (None when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        found = os.fstat(fd)
        end = found.st_size
        while end > 0 and os.pread(fd, 1, end - 1) != b"\n":  # back to the last newline: a partial line waits
            end -= 1
        return FilePosition(found.st_dev, found.st_ino, end, fingerprint_of(fd, end))
    finally:
        os.close(fd)


class FileTailer:
    def __init__(self, path: Path, saved: FilePosition | None = None) -> None:
        self.path = path
        self.source = f"file:{path}"
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._fingerprint: bytes | None = None
        self._pending_old: tuple[int, int] | None = None  # an old file to finish first: (fd, offset)
        self._restore(saved)

    @property
    def position(self) -> FilePosition:
        device, inode = self._identity or (None, None)
        return FilePosition(device, inode, self._offset, self._fingerprint)

    def close(self) -> None:
        for fd in (self._fd, self._pending_old[0] if self._pending_old else None):
            if fd is not None:
                os.close(fd)
        self._fd, self._pending_old = None, None

    # -- where to start ---------------------------------------------------------------------------------------

    def _restore(self, saved: FilePosition | None) -> None:
        if saved is None:
            self._open_current(0)
            return
        current = self._stat(self.path)
        if current is not None and (current.st_dev, current.st_ino) == (saved.device, saved.inode):
            self._open_current(saved.offset)
            fd = self._fd
            if fd is not None and (
                os.fstat(fd).st_size < saved.offset or fingerprint_of(fd, saved.offset) != saved.fingerprint
            ):
                self._offset, self._fingerprint = 0, None  # truncated (copytruncate) or replaced: from the start
            return
        # The path names another file now: rotated by rename while we were stopped. Finish the old one if it is
        # still beside it, then follow the new one from its start.
        old = self._find_inode(saved.device, saved.inode)
        if old is not None:
            fd = os.open(old, os.O_RDONLY)
            if os.fstat(fd).st_size >= saved.offset and fingerprint_of(fd, saved.offset) == saved.fingerprint:
                self._pending_old = (fd, saved.offset)
            else:
                os.close(fd)
        self._open_current(0)

    def _find_inode(self, device: int | None, inode: int | None) -> Path | None:
        if device is None or inode is None:
            return None
        try:
            siblings = list(self.path.parent.iterdir())
        except OSError:
            return None
        for sibling in siblings:
            found = self._stat(sibling)
            if found is not None and (found.st_dev, found.st_ino) == (device, inode):
                return sibling
        return None

    @staticmethod
    def _stat(path: Path) -> os.stat_result | None:
        try:
            return os.stat(path)
        except OSError:
            return None

    def _open_current(self, offset: int) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            self._fd, self._identity, self._offset, self._fingerprint = None, None, 0, None
            return
        found = os.fstat(fd)
        self._fd, self._identity, self._offset = fd, (found.st_dev, found.st_ino), offset
        self._fingerprint = fingerprint_of(fd, offset)

    # -- reading ----------------------------------------------------------------------------------------------

    def lines(self) -> Iterator[tuple[str, FilePosition]]:
        """Every complete line written since the last call, each with the position just after it."""
        if self._pending_old is not None:
            fd, offset = self._pending_old
            self._pending_old = None
            yield from _finish(fd, offset)
        current = self._stat(self.path)
        if self._fd is None:
            if current is None:
                return
            self._open_current(0)
            if self._fd is None:
                return
        identity = (current.st_dev, current.st_ino) if current is not None else self._identity
        if identity != self._identity:
            # Rotated by rename (or removed): finish the file we hold, then follow the new one from 0.
            old_fd, old_offset = self._fd, self._offset
            self._fd, self._identity, self._offset, self._fingerprint = None, None, 0, None
            yield from _finish(old_fd, old_offset)
            if current is None:
                return
            self._open_current(0)
            if self._fd is None:
                return
        size = os.fstat(self._fd).st_size
        if size < self._offset or (
            self._fingerprint is not None and fingerprint_of(self._fd, self._offset) != self._fingerprint
        ):
            self._offset, self._fingerprint = 0, None  # truncated in place (copytruncate): from the start
        for line, end in _complete_lines(self._fd, self._offset, final=False):
            if self._offset < FINGERPRINT_BYTES:  # the fingerprint covers the first min(offset, 256) bytes
                self._fingerprint = fingerprint_of(self._fd, end)
            self._offset = end
            yield line, self.position


def _finish(fd: int, offset: int) -> Iterator[tuple[str, FilePosition]]:
    """The rest of a rotated file, a last partial line included, each line with its position in that file (so a
    crash part-way finds the old file again by its inode and goes on)."""
    found = os.fstat(fd)
    fingerprint = fingerprint_of(fd, offset)
    try:
        for line, end in _complete_lines(fd, offset, final=True):
            if offset < FINGERPRINT_BYTES:
                fingerprint = fingerprint_of(fd, end)
            offset = end
            yield line, FilePosition(found.st_dev, found.st_ino, end, fingerprint)
    finally:
        os.close(fd)


def _complete_lines(fd: int, offset: int, *, final: bool) -> Iterator[tuple[str, int]]:
    """Lines from `offset` to the file's end, each with the offset after its newline; a last line without one only
    when `final` (the file will not grow again)."""
    position = offset
    buffered = b""
    while True:
        chunk = os.pread(fd, READ_CHUNK, position + len(buffered))
        if not chunk:
            break
        buffered += chunk
        start = 0
        while True:
            newline = buffered.find(b"\n", start)
            if newline < 0:
                break
            end = newline + 1
            yield buffered[start:end].decode("utf-8", errors="replace"), position + end
            start = end
        position += start
        buffered = buffered[start:]
        if len(buffered) > MAX_LINE:
            yield buffered.decode("utf-8", errors="replace"), position + len(buffered)
            position += len(buffered)
            buffered = b""
    if final and buffered:
        yield buffered.decode("utf-8", errors="replace"), position + len(buffered)
