"""AES-256-GCM sealing with a version byte, the one cipher construction Bookwarden uses."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """Ciphertext could not be opened: wrong key, wrong context (AAD), or tampered bytes."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


Key = bytes | AESGCM  # raw key, or a cipher built once by `cipher()` to open many values with it


def cipher(key: bytes) -> AESGCM:
    return AESGCM(key)


def _aead(key: Key) -> AESGCM:
    return key if isinstance(key, AESGCM) else AESGCM(key)


def seal(key: Key, plaintext: bytes, aad: bytes) -> bytes:
    # A random 96-bit nonce per message: safe for well under 2^32 messages per key, and every
    # subject has its own key, so no key comes near that bound.
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + _aead(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: Key, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != FORMAT_V1:
        raise DecryptionError("not a sealed value of a known format")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return _aead(key).decrypt(nonce, body, aad)
    except InvalidTag as exc:
        raise DecryptionError("authentication failed") from exc
