"""The platform's Ed25519 checkpoint key, and the checkpoint statement it signs.

The key is BOOKWARDEN_AUDIT_SIGNING_KEY (base64 of the raw 32-byte seed) or the file
`<home>/audit-signing.key`, made 0600 on first use and refused when others may read it (the
master key's file helpers). Its public half is what auditors pin: `bookwarden audit public-key`.

A checkpoint says "the chain of tenant T held `tree_size` events, whose Merkle root is R and whose
last chain hash is H, at time t". The signed bytes are a fixed binary layout behind a versioned
domain-separation prefix, so a signature over anything else (another version, another protocol
using the same key) can never pass for a checkpoint signature. This module imports nothing that
connects: verifying a bundle offline uses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bookwarden.audit.merkle import Frontier
from bookwarden.core import faults
from bookwarden.core.config import Settings
from bookwarden.core.errors import BookwardenError, InvalidInput
from bookwarden.crypto.aead import new_key
from bookwarden.crypto.master import MasterKeyError, decode_key, load_key_file, write_key_file

KEY_FILE = "audit-signing.key"
RETIRED_FILE = "audit-signing-retired.pub"  # public halves of earlier keys, one base64 key per line
STATEMENT_PREFIX = b"bookwarden-audit-checkpoint-v1\n"
PUBLIC_KEY_BYTES = 32
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SigningKeyUnavailable(BookwardenError):
    slug, status, title = "signing-key-unavailable", 503, "Audit signing key unavailable"


def key_id(public_key: bytes) -> str:
    """A short public name for a key: the start of the SHA-256 of its raw public bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def encode_public_key(public_key: bytes) -> str:
    return base64.b64encode(public_key).decode()


def decode_public_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("a public key is the base64 of 32 raw Ed25519 bytes") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise InvalidInput(f"a public key is 32 raw Ed25519 bytes, this one has {len(raw)}")
    return raw


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public: bytes
    key_id: str

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(private, public, key_id(public))

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def load_signing_key(settings: Settings) -> SigningKey:
    what = "audit signing key"
    try:
        if settings.audit_signing_key is not None:
            seed = decode_key(settings.audit_signing_key.get_secret_value(), f"BOOKWARDEN_AUDIT_SIGNING_KEY ({what})")
        else:
            seed = load_key_file(settings.resolved_home / KEY_FILE, what)
    except MasterKeyError as exc:
        raise SigningKeyUnavailable(str(exc)) from None
    return SigningKey.from_seed(seed)


def trusted_public_keys(settings: Settings) -> list[bytes]:
    """The current key's public half, then every retired one: what this platform's own verification trusts.

    Retired keys come from outside the database (the file next to the key, or the environment), like
    the current one: a tamperer who can write the database cannot add a key of their own here.
    """
    path = _retired_file(settings)
    retired = path.read_text().splitlines() if path.exists() else []
    retired += (settings.audit_retired_keys or "").split(",")
    keys = [load_signing_key(settings).public]
    for text in retired:
        if text.strip() and (key := decode_public_key(text)) not in keys:
            keys.append(key)
    return keys


def rotate_signing_key(settings: Settings) -> tuple[str, str]:
    """A new signing key in the key file; the old public half kept as retired. Returns (old id, new id).

    Crash-safe in this order: the old public key is appended to the retired file (synced) before the
    key file is replaced (atomically), so at every moment each key that ever signed is trusted. Run
    again after a crash between the two steps, it retires the same key twice, which reads as once.
    """
    if settings.audit_signing_key is not None:
        raise InvalidInput(
            "the signing key comes from BOOKWARDEN_AUDIT_SIGNING_KEY: rotate it in your secret store and list "
            "the old public key (bookwarden audit public-key) in BOOKWARDEN_AUDIT_RETIRED_KEYS"
        )
    old = load_signing_key(settings)
    retired = _retired_file(settings)
    with retired.open("a") as out:
        out.write(encode_public_key(old.public) + "\n")
        out.flush()
        os.fsync(out.fileno())
    faults.point("signing.retired_appended")
    write_key_file(settings.resolved_home / KEY_FILE, new_key())
    return old.key_id, load_signing_key(settings).key_id


def _retired_file(settings: Settings) -> Path:
    return settings.resolved_home / RETIRED_FILE


class TrustedKeys:
    """Public keys a verifier accepts checkpoint signatures from, by key id."""

    def __init__(self, *public_keys: bytes) -> None:
        self.by_id = {key_id(k): Ed25519PublicKey.from_public_bytes(k) for k in public_keys}

    def check(self, checkpoint: Checkpoint) -> str | None:
        """None when the signature verifies under a trusted key; otherwise what is wrong."""
        public = self.by_id.get(checkpoint.key_id)
        if public is None:
            return f"signed by key {checkpoint.key_id}, which is not trusted (trusted: {', '.join(self.by_id)})"
        try:
            public.verify(checkpoint.signature, checkpoint.statement())
        except InvalidSignature:
            return f"its signature does not verify under key {checkpoint.key_id}"
        return None


@dataclass(frozen=True)
class Checkpoint:
    tenant_id: UUID
    tree_size: int
    root_hash: bytes
    last_hash: bytes
    frontier: tuple[bytes, ...]
    signed_at: datetime
    key_id: str
    signature: bytes

    def statement(self) -> bytes:
        return statement(self.tenant_id, self.tree_size, self.root_hash, self.last_hash, self.signed_at)

    def tree(self) -> Frontier:
        return Frontier(self.tree_size, self.frontier)

    def frontier_problem(self) -> str | None:
        """The stored frontier is not signed; it is trusted only because it folds to the signed root."""
        try:
            folded = self.tree().root()
        except ValueError as exc:
            return f"its frontier is malformed ({exc})"
        return None if folded == self.root_hash else "its frontier does not fold to its signed root"

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": str(self.tenant_id),
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "last_hash": self.last_hash.hex(),
            "frontier": [h.hex() for h in self.frontier],
            "signed_at": _timestamp(self.signed_at),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """From `as_json`; InvalidInput for anything malformed (bundles come from outside)."""
        try:
            return cls(
                tenant_id=UUID(data["tenant_id"]),
                tree_size=_count(data["tree_size"]),
                root_hash=_digest(data["root_hash"]),
                last_hash=_digest(data["last_hash"]),
                frontier=tuple(_digest(h) for h in data["frontier"]),
                signed_at=datetime.fromisoformat(data["signed_at"]),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(data["signature"], validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise InvalidInput(f"malformed checkpoint: {exc!r}") from None


def statement(tenant_id: UUID, tree_size: int, root_hash: bytes, last_hash: bytes, signed_at: datetime) -> bytes:
    """The signed bytes: prefix, tenant id (16), size (8), root (32), last chain hash (32), time (8: µs)."""
    micros = (signed_at - _EPOCH) // _MICROSECOND
    return b"".join(
        (
            STATEMENT_PREFIX,
            tenant_id.bytes,
            tree_size.to_bytes(8, "big"),
            root_hash,
            last_hash,
            micros.to_bytes(8, "big", signed=True),
        )
    )


def sign(key: SigningKey, tenant_id: UUID, frontier: Frontier, last_hash: bytes, signed_at: datetime) -> Checkpoint:
    signed_at = signed_at.astimezone(UTC)
    root = frontier.root()
    signature = key.sign(statement(tenant_id, frontier.size, root, last_hash, signed_at))
    return Checkpoint(tenant_id, frontier.size, root, last_hash, frontier.hashes, signed_at, key.key_id, signature)


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _digest(text: str) -> bytes:
    value = bytes.fromhex(text)
    if len(value) != 32:
        raise ValueError(f"a hash is 32 bytes, not {len(value)}")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value
