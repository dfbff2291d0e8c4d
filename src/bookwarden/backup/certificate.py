"""The certificate of destruction an offboarding issues: signed JSON that verifies with no database.

The file is RFC 8785 canonical JSON of an envelope:

    {"certificate": {...}, "key_id": "<16 hex>", "public_key": "<base64, raw Ed25519>", "signature": "<base64>"}

The signature is Ed25519, by the platform's audit signing key (audit/signing.py, the key that signs audit
checkpoints and backup manifests), over `PREFIX + canonical_json(certificate)`: the prefix keeps a
certificate's signature from passing for any other statement that key signs. The embedded public key only
says which key signed; trust comes from comparing it with the key the platform publishes
(`bookwarden audit public-key`), or from passing that key to `bookwarden certificate verify --public-key`.

This module imports nothing that connects: the offline verifier uses it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bookwarden.audit.signing import SigningKey, encode_public_key, key_id
from bookwarden.core.canonical import canonical_json

FORMAT = "bookwarden-destruction-certificate-v1"
PREFIX = b"bookwarden-destruction-certificate-v1\n"


def sign_certificate(certificate: dict[str, Any], signer: SigningKey) -> bytes:
    """The certificate file's bytes: the envelope, canonical, signed."""
    body = canonical_json(certificate)
    return canonical_json(
        {
            "certificate": certificate,
            "key_id": signer.key_id,
            "public_key": encode_public_key(signer.public),
            "signature": base64.b64encode(signer.sign(PREFIX + body)).decode(),
        }
    )


@dataclass
class Verification:
    certificate: dict[str, Any] | None = None
    key_id: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems and self.certificate is not None


def verify_certificate(data: bytes, pinned: list[bytes] | None = None) -> Verification:
    """Check a certificate file. With `pinned` keys, the signer must be one of them; without, the embedded
    key is used and a note says that it must still be compared with the platform's published key."""
    found = Verification()
    try:
        envelope = json.loads(data)
        certificate = envelope["certificate"]
        signature = base64.b64decode(envelope["signature"], validate=True)
        embedded = base64.b64decode(envelope["public_key"], validate=True)
        signer = envelope["key_id"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        found.problems.append(f"not a certificate file: {exc!r}")
        return found
    if not isinstance(certificate, dict) or certificate.get("format") != FORMAT:
        shown = certificate.get("format") if isinstance(certificate, dict) else None
        found.problems.append(f"unknown format {shown!r}")
        return found
    # The file must be exactly what was signed and written: canonical JSON of its envelope. Re-encoded,
    # re-ordered or padded copies are refused, so one certificate has one spelling (and one checksum).
    if canonical_json(envelope) != data.rstrip(b"\n"):
        found.problems.append("the file is not the canonical encoding of its content (it was edited)")
    if len(embedded) != 32 or key_id(embedded) != signer:
        found.problems.append(f"the embedded public key is not key {signer}")
    if pinned:
        keys = {key_id(k): k for k in pinned}
        if signer not in keys:
            found.problems.append(f"signed by key {signer}, which is not the key given (given: {', '.join(keys)})")
            return found
        public = keys[signer]
    else:
        public = embedded
        found.notes.append(
            f"checked against the key embedded in the file ({signer}); compare it with the platform's published "
            "key (bookwarden audit public-key), or pass --public-key"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, PREFIX + canonical_json(certificate))
    except (InvalidSignature, ValueError):
        found.problems.append(f"the signature does not verify under key {signer}: the certificate was altered")
        return found
    found.certificate, found.key_id = certificate, signer
    return found
