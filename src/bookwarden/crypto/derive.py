"""Every key derived from another key: one function, one enumeration of purposes.

A purpose is a label and a method, and neither may change: what they derive is already out in
the world (one-time and unsubscribe links in mailboxes, role passwords set in PostgreSQL, master
key ids in keyring rows, throttle counts keyed by address). A new use gets a new purpose with a
label of its own; tests/crypto/test_key_derivation.py holds the answer each purpose must keep giving.

Two methods, because both were in use before they were gathered here: HMAC-SHA256 keyed by the
parent with the label as message, and HKDF-SHA256 without salt with the label as info. Each is a
sound derivation from a uniformly random 32-byte parent, so neither is worth the links and
passwords that switching one would break.

Deriving a key happens here; using it (an HMAC over a payload or an address) stays with its user.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32


class Method(enum.Enum):
    HMAC_SHA256 = "HMAC-SHA256(parent, label)"
    HKDF_SHA256 = "HKDF-SHA256(parent, salt none, info label, 32 bytes)"


@enum.unique
class KeyPurpose(enum.Enum):
    """What a derived key is for. The value is the label; `{}` in it stands for the parameter."""

    method: Method

    def __new__(cls, label: str, method: Method) -> KeyPurpose:
        purpose = object.__new__(cls)
        purpose._value_ = label
        purpose.method = method
        return purpose

    # --- from the master key ---------------------------------------------------------------
    # A master key's public name (its first 16 hex digits), stored beside every key it wrapped.
    MASTER_KEY_ID = "bookwarden master key id", Method.HMAC_SHA256
    # A database role's password (hex); parameter: the role. Nothing more to store, and
    # provisioning run again sets the same password.
    DATABASE_ROLE_PASSWORD = "database-role:{}", Method.HMAC_SHA256
    # The key an address bucket is HMACed under to make the address's throttle key, which is
    # the parent of the address purposes below.
    ADDRESS_THROTTLE = "bookwarden auth_failures address key", Method.HMAC_SHA256
    # Signs one-time links; parameter: the link's purpose, so a reset link cannot even be
    # checked as an invitation.
    ONE_TIME_LINK_SIGNING = "bookwarden one-time links: sign {}", Method.HKDF_SHA256
    # Keys the fingerprint of account state a one-time link is bound to.
    ONE_TIME_LINK_STATE = "bookwarden one-time links: account state", Method.HKDF_SHA256
    # Signs the one-click unsubscribe links in optional mail.
    UNSUBSCRIBE_LINK = "bookwarden unsubscribe links", Method.HKDF_SHA256
    # Wraps each backup's own random key (backup/manifest.py); the master key itself is never in a backup.
    BACKUP_KEY_WRAP = "bookwarden backups: wrap backup keys", Method.HKDF_SHA256
    # Signs the expiring link to an offboarded institution's final export (backup/offboarding.py).
    OFFBOARDING_EXPORT_LINK = "bookwarden offboarding: export links", Method.HKDF_SHA256
    # Keys the CSRF tokens of the web pages' forms (web/csrf.py), bound to the browser's cookies.
    WEB_FORM_CSRF = "bookwarden web forms: csrf", Method.HKDF_SHA256

    # --- from an address's throttle key (identity/throttle.py: address_key) ----------
    # Each keys a count of its own, so one kind of request from an address never uses up
    # another's allowance (nor its sign-in failures).
    SAML_SIGN_IN_START = "saml sign-in start", Method.HMAC_SHA256
    SELF_REGISTRATION = "self-registration", Method.HMAC_SHA256
    PASSWORD_RESET_REQUEST = "password reset requests", Method.HMAC_SHA256
    PRIVACY_REQUEST_FORM = "privacy request forms", Method.HMAC_SHA256
    CONCERN_REPORT = "concern reports", Method.HMAC_SHA256
    # An open route's budget (throttle.Budget); parameter: the budget's name, one that the
    # rate_budgets CHECK allows. The bare name is the label because it always was.
    ADDRESS_BUDGET = "{}", Method.HMAC_SHA256

    @property
    def takes_parameter(self) -> bool:
        return "{}" in self.value

    def label(self, parameter: str | None = None) -> str:
        if self.takes_parameter != (parameter is not None):
            needs = "needs a parameter" if self.takes_parameter else "takes no parameter"
            raise ValueError(f"key purpose {self.name} {needs} (label {self.value!r})")
        return self.value.format(parameter) if self.takes_parameter else self.value


def derive(parent: bytes, purpose: KeyPurpose, parameter: str | None = None) -> bytes:
    """The 32-byte key for `purpose` from `parent` (the master key, or the key the purpose names)."""
    label = purpose.label(parameter).encode()
    if purpose.method is Method.HKDF_SHA256:
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label).derive(parent)
    return hmac.new(parent, label, hashlib.sha256).digest()


__all__ = ["KeyPurpose", "Method", "derive"]
