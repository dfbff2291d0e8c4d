"""The master key: from BOOKWARDEN_MASTER_KEY, or a key file created 0600 on first run.

During a master-key rotation a second file, `master.key.next`, holds the new key until every
wrapped key has been re-wrapped; both are loaded so a rotation interrupted by a crash resumes.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from bookwarden.core.config import Settings
from bookwarden.crypto.aead import KEY_BYTES, new_key
from bookwarden.crypto.derive import KeyPurpose, derive


class MasterKeyError(Exception):
    pass


@dataclass(frozen=True)
class MasterKeys:
    current_id: str
    keys: dict[str, bytes]

    @property
    def current(self) -> bytes:
        return self.keys[self.current_id]

    def get(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise MasterKeyError(f"master key {key_id} is not loaded; was the key file replaced?") from None


def key_id(key: bytes) -> str:
    """A public name for a key: it reveals nothing of the key and tells which one wrapped a row."""
    return derive(key, KeyPurpose.MASTER_KEY_ID).hex()[:16]


def decode_key(text: str, what: str = "master key") -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MasterKeyError(f"{what} must be base64") from exc
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"{what} must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def key_file(settings: Settings) -> Path:
    return settings.resolved_home / "master.key"


def next_key_file(settings: Settings) -> Path:
    return settings.resolved_home / "master.key.next"


def write_key_file(path: Path, key: bytes) -> None:
    """Write atomically with mode 0600 from the first byte (never world-readable, even briefly)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encode_key(key) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_key_file(path: Path, what: str = "master key") -> bytes:
    """The key in `path`, made (0600, fresh random bytes) on first use; refused if others may read it."""
    if not path.exists():
        write_key_file(path, new_key())
    if path.stat().st_mode & 0o077:
        raise MasterKeyError(f"{path} is readable by others; run: chmod 600 {path}")
    return decode_key(path.read_text(), what)


def load_master_keys(settings: Settings) -> MasterKeys:
    if settings.master_key is not None:
        current = decode_key(settings.master_key.get_secret_value())
        keys = {key_id(current): current}
    else:
        current = load_key_file(key_file(settings))
        keys = {key_id(current): current}
    pending = next_key_file(settings)
    if pending.exists():
        nxt = decode_key(pending.read_text())
        keys[key_id(nxt)] = nxt
    return MasterKeys(current_id=key_id(current), keys=keys)
