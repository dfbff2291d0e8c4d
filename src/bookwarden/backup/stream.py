"""The encrypted, chunked file a backup member is written as, and its reader.

A member (the data dump, the file areas, the configuration) is cut into chunks of CHUNK_BYTES,
each sealed with AES-256-GCM under the backup's own random key. On disk a chunk is a record:

    length (4 bytes, big-endian, of the ciphertext) | final flag (1) | nonce (12) | ciphertext+tag

The associated data of every chunk binds the backup id, the member's name, the chunk's index, its
final flag and its nonce, so a chunk moved to another place, another member or another backup, a
reordered pair, an altered byte, a flag flipped to fake an earlier end, and a file cut short (no
chunk with the final flag arrives) are each detected. The manifest also lists each record's
SHA-256, so a corrupted chunk is named before any key is used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"BWBACKUP1\n"
CHUNK_BYTES = 4 * 1024 * 1024
NONCE_BYTES = 12
TAG_BYTES = 16
_HEAD = 4 + 1 + NONCE_BYTES


class BackupCorrupt(Exception):
    """A member cannot be read back as written: altered, reordered, truncated or under another key."""


def chunk_aad(backup_id: UUID, member: str, index: int, final: bool, nonce: bytes) -> bytes:
    return b"|".join(
        (
            b"bookwarden-backup-chunk-v1",
            backup_id.bytes,
            member.encode(),
            index.to_bytes(8, "big"),
            b"\x01" if final else b"\x00",
            nonce,
        )
    )


def create_private(path: Path) -> BinaryIO:
    """A new file, mode 0600 from its first byte; refused if it exists (a backup never overwrites)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


@dataclass
class MemberWriter:
    """Seals what is written into records; `close()` writes the final chunk (possibly empty)."""

    sink: BinaryIO
    key: bytes
    backup_id: UUID
    member: str
    progress: Callable[[int], None] | None = None
    plain_bytes: int = 0
    chunks: list[str] = field(default_factory=list)  # SHA-256 of each record, hex
    _buffer: bytearray = field(default_factory=bytearray)
    _plain_sha: object = field(default_factory=hashlib.sha256)
    _aead: AESGCM | None = None

    def __post_init__(self) -> None:
        self._aead = AESGCM(self.key)
        self.sink.write(MAGIC)

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._plain_sha.update(data)
        self.plain_bytes += len(data)
        while len(self._buffer) > CHUNK_BYTES:
            self._seal(bytes(self._buffer[:CHUNK_BYTES]), final=False)
            del self._buffer[:CHUNK_BYTES]
        if self.progress is not None:
            self.progress(len(data))
        return len(data)

    def close(self) -> None:
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        self.sink.flush()
        os.fsync(self.sink.fileno())

    @property
    def plain_sha256(self) -> str:
        return self._plain_sha.hexdigest()

    def _seal(self, plain: bytes, *, final: bool) -> None:
        nonce = os.urandom(NONCE_BYTES)
        body = self._aead.encrypt(nonce, plain, chunk_aad(self.backup_id, self.member, len(self.chunks), final, nonce))
        record = len(body).to_bytes(4, "big") + (b"\x01" if final else b"\x00") + nonce + body
        self.sink.write(record)
        self.chunks.append(hashlib.sha256(record).hexdigest())


def read_member(
    source: BinaryIO, key: bytes, backup_id: UUID, member: str, checksums: list[str] | None = None
) -> Iterator[bytes]:
    """The plaintext of a member, chunk by chunk; BackupCorrupt at the first chunk that is not as written.

    With `checksums` (the manifest's), each record's SHA-256 is compared before it is decrypted, and
    the number of chunks must match.
    """
    if source.read(len(MAGIC)) != MAGIC:
        raise BackupCorrupt(f"member {member}: not a Bookwarden backup file (bad header)")
    aead = AESGCM(key)
    index = 0
    while True:
        head = source.read(_HEAD)
        if len(head) < _HEAD:
            raise BackupCorrupt(f"member {member}: truncated after chunk {index - 1}: no final chunk")
        length, flag, nonce = int.from_bytes(head[:4], "big"), head[4], head[5:]
        if flag not in (0, 1) or length < TAG_BYTES or length > CHUNK_BYTES + TAG_BYTES:
            raise BackupCorrupt(f"member {member}: chunk {index} has a malformed header")
        body = source.read(length)
        if len(body) < length:
            raise BackupCorrupt(f"member {member}: truncated inside chunk {index}")
        final = flag == 1
        if checksums is not None:
            if index >= len(checksums):
                raise BackupCorrupt(f"member {member}: chunk {index} is not in the manifest ({len(checksums)} listed)")
            if hashlib.sha256(head + body).hexdigest() != checksums[index]:
                raise BackupCorrupt(f"member {member}: chunk {index} does not match its checksum in the manifest")
        try:
            plain = aead.decrypt(nonce, body, chunk_aad(backup_id, member, index, final, nonce))
        except InvalidTag:
            raise BackupCorrupt(
                f"member {member}: chunk {index} fails authentication (altered, moved, or sealed under another key)"
            ) from None
        yield plain
        index += 1
        if final:
            break
    if source.read(1):
        raise BackupCorrupt(f"member {member}: data after the final chunk {index - 1}")
    if checksums is not None and index != len(checksums):
        raise BackupCorrupt(f"member {member}: {index} chunks read, the manifest lists {len(checksums)}")
