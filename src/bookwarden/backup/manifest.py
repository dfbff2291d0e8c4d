"""A backup's manifest: what it holds, how to check it, signed; and the backup key it carries, wrapped.

The manifest lists each member's file, sizes, the SHA-256 of every chunk record and of the whole
plaintext, and each table's row count and SHA-256 (of its rows as `COPY ... TO STDOUT` writes them,
in primary-key order, at the backup's snapshot). It is RFC 8785 canonical JSON behind the prefix
`bookwarden-backup-manifest-v1\n`, signed with the platform's Ed25519 audit key (audit/signing.py),
and written last: a backup without a manifest that verifies is not a backup.

Each backup has its own random AES-256 key, sealed (AES-256-GCM, AAD naming the backup) under a key
derived from the master key (`KeyPurpose.BACKUP_KEY_WRAP`). The master key itself is never written
into any backup: without it no backup opens, and with it only the backups, not the keyring's
destroyed keys, come back.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bookwarden.audit.signing import SigningKey, key_id
from bookwarden.backup.stream import BackupCorrupt, create_private
from bookwarden.core.canonical import canonical_json
from bookwarden.crypto.aead import DecryptionError, open_sealed, seal
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.master import MasterKeys

FORMAT = "bookwarden-backup-v1"
PREFIX = b"bookwarden-backup-manifest-v1\n"
FILE = "manifest.json"


def _wrap_aad(backup_id: UUID) -> bytes:
    return f"backup-key|{backup_id}".encode()


def wrapping_key(master_key: bytes) -> bytes:
    return derive(master_key, KeyPurpose.BACKUP_KEY_WRAP)


def wrap_backup_key(master: MasterKeys, backup_id: UUID, key: bytes) -> str:
    wrapping = wrapping_key(master.current)
    return base64.b64encode(seal(wrapping, key, _wrap_aad(backup_id))).decode()


def unwrap_backup_key(master: MasterKeys, manifest: dict[str, Any]) -> bytes:
    """The backup's key; BackupCorrupt when the master key that wrapped it is not this one."""
    backup_id = UUID(manifest["id"])
    wanted = manifest["master_key_id"]
    if wanted not in master.keys:
        raise BackupCorrupt(
            f"backup {backup_id} was wrapped by master key {wanted}, which is not loaded (loaded: "
            f"{', '.join(master.keys)}); restore with the master key of that time"
        )
    try:
        return open_sealed(
            wrapping_key(master.get(wanted)),
            base64.b64decode(manifest["wrapped_key"]),
            _wrap_aad(backup_id),
        )
    except DecryptionError:
        raise BackupCorrupt(f"backup {backup_id}: its key does not open under master key {wanted}") from None


def write_manifest(directory: Path, manifest: dict[str, Any], signer: SigningKey) -> bytes:
    """Sign and write the manifest (0600, atomically: a manifest is whole or absent). Returns its bytes."""
    body = canonical_json(manifest)
    envelope = {
        "manifest": manifest,
        "key_id": signer.key_id,
        "signature": base64.b64encode(signer.sign(PREFIX + body)).decode(),
    }
    data = canonical_json(envelope)
    tmp = directory / (FILE + ".tmp")
    with create_private(tmp) as out:
        out.write(data)
    tmp.replace(directory / FILE)
    return data


def read_manifest(directory: Path, trusted: list[bytes]) -> dict[str, Any]:
    """The manifest, once its signature verifies under one of the `trusted` public keys."""
    path = directory / FILE
    if not path.exists():
        raise BackupCorrupt(f"{directory}: no manifest (an interrupted backup is never complete)")
    try:
        envelope = json.loads(path.read_bytes())
        manifest, signature = envelope["manifest"], base64.b64decode(envelope["signature"])
        signer = envelope["key_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupCorrupt(f"{path}: malformed manifest ({exc})") from None
    keys = {key_id(k): k for k in trusted}
    if signer not in keys:
        raise BackupCorrupt(f"{path}: signed by key {signer}, which is not trusted (trusted: {', '.join(keys)})")
    try:
        Ed25519PublicKey.from_public_bytes(keys[signer]).verify(signature, PREFIX + canonical_json(manifest))
    except InvalidSignature:
        raise BackupCorrupt(f"{path}: the manifest's signature does not verify under key {signer}") from None
    if manifest.get("format") != FORMAT:
        raise BackupCorrupt(f"{path}: unknown format {manifest.get('format')!r}")
    return manifest
