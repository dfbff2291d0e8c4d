"""Overwriting files before they are removed: the methods an offboarding's certificate names.

A method names itself and its passes; `wipe_file` looks it up by name (as approval kinds are):

- `nist-800-88-clear`: NIST SP 800-88 Rev. 1 "clear" for files: one pass of pseudo-random data
  (AES-256-CTR keystream under a fresh key, as nwipe's PRNG streams are), synced to storage.
- `dod-5220.22-m`: DoD 5220.22-M's three passes: zeros, ones (0xFF), pseudo-random; each synced, and the
  last read back from storage (the page cache dropped first) and compared with what was written.

Each pass writes in large blocks (BLOCK_BYTES) over the file's whole length, in place, then fsyncs; the
file is then renamed to a random name (so the directory entry no longer says what it was), truncated,
synced and unlinked, like `shred -u`.

What overwriting cannot promise. On SSDs and other flash storage the controller remaps writes (wear
levelling, over-provisioning), so a logical overwrite may leave the old cells intact; on journaling file
systems with data journaling (ext4 `data=journal`) and on copy-on-write ones (btrfs, ZFS, XFS reflinks,
snapshots) a write goes to new blocks and the old ones stay until reused. NIST SP 800-88 says as much and
counts cryptographic erase as purge. That is why Bookwarden encrypts everything it stores under keys it can
destroy: destroying the institution's keys is what makes its data unreadable, on every medium and in every
backup once the keyring backups holding those keys expire; the overwrite is defence in depth for the
plaintext files an offboarding leaves (the final export above all).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_BYTES = 8 * 1024 * 1024
LIMITS = (
    "Overwriting reaches the logical blocks of a file. On SSDs and flash (wear levelling, over-provisioning) "
    "and on journaling or copy-on-write file systems (data journaling, btrfs, ZFS, reflinks, snapshots) old "
    "copies can survive it; NIST SP 800-88 counts cryptographic erase as purge. The institution's keys were "
    "destroyed first: that, not the overwrite, is what makes its data unreadable on every medium and backup."
)


class WipeFailed(Exception):
    """A verification read did not find what the last pass wrote: the file was not overwritten as claimed."""


class _Random:
    """A pass of pseudo-random bytes that can be produced again, block for block, to verify it."""

    def __init__(self) -> None:
        self._key, self._nonce = secrets.token_bytes(32), secrets.token_bytes(16)

    def stream(self) -> Callable[[int], bytes]:
        encryptor = Cipher(algorithms.AES(self._key), modes.CTR(self._nonce)).encryptor()
        return lambda n: encryptor.update(bytes(n))


def _constant(byte: int) -> Callable[[], Callable[[int], bytes]]:
    block = bytes([byte]) * BLOCK_BYTES
    return lambda: lambda n: block if n == BLOCK_BYTES else block[:n]


ZEROS, ONES = 0x00, 0xFF


@dataclass(frozen=True)
class WipeMethod:
    name: str
    standard: str
    passes: tuple[str, ...]  # "zeros", "ones", "random", in order
    verify_last: bool

    def describe(self) -> str:
        verified = ", the last read back and compared" if self.verify_last else ""
        return f"{self.standard}: {len(self.passes)} pass(es) ({', '.join(self.passes)}){verified}, each synced"


NIST_CLEAR = WipeMethod("nist-800-88-clear", "NIST SP 800-88 Rev. 1 clear", ("random",), verify_last=False)
DOD_3PASS = WipeMethod("dod-5220.22-m", "DoD 5220.22-M", ("zeros", "ones", "random"), verify_last=True)
METHODS: dict[str, WipeMethod] = {m.name: m for m in (NIST_CLEAR, DOD_3PASS)}


def method_named(name: str) -> WipeMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown wipe method {name!r}: one of {', '.join(METHODS)}") from None


def _pattern(kind: str):
    if kind == "random":
        return _Random()
    return _Pattern(ZEROS if kind == "zeros" else ONES)


class _Pattern:
    def __init__(self, byte: int) -> None:
        self._make = _constant(byte)

    def stream(self) -> Callable[[int], bytes]:
        return self._make()


def overwrite(path: Path, method: WipeMethod) -> int:
    """Overwrite the file in place with each pass of `method`; returns its length. Does not remove it."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        pattern = None
        for kind in method.passes:
            pattern = _pattern(kind)
            _write_pass(fd, size, pattern.stream())
        if method.verify_last and pattern is not None:
            _verify_pass(fd, size, pattern.stream(), path)
        return size
    finally:
        os.close(fd)


def _write_pass(fd: int, size: int, produce: Callable[[int], bytes]) -> None:
    offset = 0
    while offset < size:
        n = min(BLOCK_BYTES, size - offset)
        block = produce(n)
        written = 0
        while written < n:
            written += os.pwrite(fd, memoryview(block)[written:n], offset + written)
        offset += n
    os.fsync(fd)


def _verify_pass(fd: int, size: int, produce: Callable[[int], bytes], path: Path) -> None:
    # Synced already: drop the cached pages so the read comes from the device, not from memory.
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    offset = 0
    while offset < size:
        n = min(BLOCK_BYTES, size - offset)
        if os.pread(fd, n, offset) != produce(n):
            raise WipeFailed(f"{path}: the verification read at byte {offset} differs from the last pass written")
        offset += n


def wipe_file(path: Path, method: WipeMethod) -> int:
    """Overwrite, rename to a random name, truncate and unlink one file; returns the bytes overwritten."""
    size = overwrite(path, method)
    hidden = path.with_name(secrets.token_hex(8))
    path.rename(hidden)
    with open(hidden, "r+b") as handle:
        handle.truncate(0)
        os.fsync(handle.fileno())
    hidden.unlink()
    _sync_dir(path.parent)
    return size


def wipe_tree(root: Path, method: WipeMethod) -> tuple[int, int]:
    """Wipe every regular file under `root`, then remove its folders; (files, bytes). Absent: (0, 0).

    Idempotent: run again after a crash it finds only what is left. Symbolic links are removed, never
    followed (a link out of the tree must not make the wipe overwrite something else).
    """
    if not root.exists() and not root.is_symlink():
        return 0, 0
    if root.is_symlink():
        root.unlink()
        return 0, 0
    if root.is_file():
        return 1, wipe_file(root, method)
    files = size = 0
    for folder, dirs, names in os.walk(root, topdown=False):
        here = Path(folder)
        for name in names:
            entry = here / name
            if entry.is_symlink() or not entry.is_file():
                entry.unlink()
                continue
            size += wipe_file(entry, method)
            files += 1
        for name in dirs:
            entry = here / name
            entry.unlink() if entry.is_symlink() else entry.rmdir()
    root.rmdir()
    _sync_dir(root.parent)
    return files, size


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
