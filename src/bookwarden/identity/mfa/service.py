"""Multi-factor authentication: TOTP (RFC 6238), one-time recovery codes, and WebAuthn.

TOTP with recovery codes is offered to every account; WebAuthn (security keys, passkeys) to staff.
Pure functions and frozen dataclasses, like passwords.py: the identity service keeps the state in
PostgreSQL and passes it back in. What it stores, and how:

- the TOTP secret (base32 text): encrypted by the caller, it is the one real secret here;
- the last accepted TOTP time step (int): the replay guard;
- recovery code hashes (text): see "Recovery codes" below for why a fast hash is enough;
- WebAuthn credentials (`WebAuthnCredential`): public keys and counters, nothing secret;
- WebAuthn challenges (bytes): kept server-side, for at most `CEREMONY_TIMEOUT`, used once.

Replay protection holds only if the caller writes the new state conditionally: update the TOTP step
with `WHERE last_used_step IS NULL OR last_used_step < :step`, and the recovery hashes and sign
count under a row lock, so that two requests racing with the same code cannot both succeed.

Nothing here logs, and no error message carries a code, a secret, a challenge or a signature.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import math
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pyotp
import webauthn
from cryptography.exceptions import UnsupportedAlgorithm
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorData,
    AuthenticatorSelectionCriteria,
    CollectedClientData,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from bookwarden.core.errors import BookwardenError, InvalidInput

# ---------------------------------------------------------------------------------------------
# Errors


class MfaFailure(enum.StrEnum):
    """Which check refused a WebAuthn response; services record it in the audit event."""

    MALFORMED_RESPONSE = "malformed_response"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    CHALLENGE_MISMATCH = "challenge_mismatch"
    ORIGIN_MISMATCH = "origin_mismatch"
    RP_ID_MISMATCH = "rp_id_mismatch"
    USER_NOT_PRESENT = "user_not_present"
    USER_NOT_VERIFIED = "user_not_verified"
    SIGN_COUNT_NOT_INCREASED = "sign_count_not_increased"
    VERIFICATION_FAILED = "verification_failed"


class MfaError(BookwardenError):
    """A second factor was refused at sign-in: 401, the sign-in does not go through."""

    slug, status, title = "mfa-failed", 401, "Second factor refused"

    def __init__(self, reason: MfaFailure, detail: str):
        super().__init__(detail)
        self.reason = reason


class MfaRegistrationError(MfaError):
    """A new security key was refused. The user is signed in and stays so: the request is at fault."""

    slug, status, title = "mfa-registration-failed", 422, "Security key not registered"


# ---------------------------------------------------------------------------------------------
# TOTP (RFC 6238)

TOTP_DIGITS = 6
# RFC 6238's default step, and the only one every authenticator app honours: the URI's `period`
# parameter is ignored by several popular apps, which would then show codes that never match.
TOTP_PERIOD_SECONDS = 30
_TOTP_SECRET_BYTES = 20  # 160 bits, the HMAC-SHA1 output length RFC 4226 §4 recommends
_TOTP_CODE = re.compile(r"[0-9]{6}")  # not \d, which also matches Arabic-Indic and other digits
_TOTP_INPUT_MAX = 32  # longer input cannot be a code with spaces in it; refused before any work
_TOTP_WINDOW_MAX = 10


def new_totp_secret() -> str:
    """A fresh 160-bit secret in base32, the form authenticator apps and `provisioning_uri` take.

    20 bytes encode to exactly 32 base32 characters: no "=" padding, which some apps reject.
    """
    return base64.b32encode(secrets.token_bytes(_TOTP_SECRET_BYTES)).decode("ascii")


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """The otpauth:// URI to show as a QR code while the user enrols an authenticator app."""
    for label, value in (("issuer", issuer), ("account name", account_name)):
        if not value.strip():
            raise InvalidInput(f"the authenticator app needs a non-empty {label} to label the code")
        # The Key URI format's label is "issuer:account": a colon in either would split it wrongly.
        if ":" in value:
            raise InvalidInput(f"the {label} {value!r} contains a colon, which authenticator apps cannot display")
    return _totp(secret).provisioning_uri(name=account_name, issuer_name=issuer)


def totp_step(moment: datetime) -> int:
    """The RFC 6238 time step (30-second period since the Unix epoch) that contains `moment`."""
    if moment.tzinfo is None:
        # A naive datetime would be read as the server's local time and shift every code by hours.
        raise ValueError("totp_step needs a timezone-aware datetime")
    return int(moment.timestamp()) // TOTP_PERIOD_SECONDS


def verify_totp(
    secret: str,
    code: str,
    *,
    last_used_step: int | None,
    now: datetime | None = None,
    window: int = 1,
) -> int | None:
    """The time step `code` belongs to, or None when it is wrong, malformed or already used.

    Accepts the current step and `window` steps either side (clock drift, time to type). A code
    whose step is at or before `last_used_step` is refused even when valid (RFC 6238 §5.2): a code
    seen over a shoulder or phished cannot be played again. Store the returned step as the new
    `last_used_step`.
    """
    if not 0 <= window <= _TOTP_WINDOW_MAX:
        raise ValueError(f"window must be between 0 and {_TOTP_WINDOW_MAX} steps")
    candidate = _normal_totp_code(code)
    if candidate is None:
        return None
    totp = _totp(secret)
    current = totp_step(now or datetime.now(UTC))
    fresh_after = -1 if last_used_step is None else last_used_step
    matched: int | None = None
    # Earliest fresh step first, so a match burns as few later codes as possible. Every step is
    # compared, in constant time, so timing shows neither which step matched nor how many digits.
    for step in range(max(0, current - window), current + window + 1):
        equal = hmac.compare_digest(totp.generate_otp(step), candidate)
        if equal and step > fresh_after and matched is None:
            matched = step
    return matched


def _normal_totp_code(code: str) -> str | None:
    # Apps show "123 456"; copy and paste may bring other whitespace along.
    if len(code) > _TOTP_INPUT_MAX:
        return None
    compact = "".join(code.split())
    return compact if _TOTP_CODE.fullmatch(compact) else None


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)


# ---------------------------------------------------------------------------------------------
# Recovery codes
#
# Each code is 16 characters drawn by the OS's CSPRNG from a 31-letter alphabet: 79 bits. That is
# what makes one salted SHA-256 enough where a password needs argon2id: passwords are guessable
# because people choose them, and nobody chose these. Searching 2^79 at ten billion SHA-256 a
# second takes about two million GPU-years per code. The per-code salt makes each stored hash a
# search of its own: unsalted, one computation tests a guess against the whole table, and with 12
# characters (59 bits) a table of a million hashes would give up someone's code in a GPU-minute.
# A pepper (an HMAC key held outside the database) would add little on top of 79 bits, and would
# tie every stored hash to a key that must then be kept and rotated.

RECOVERY_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: read off paper unambiguously
RECOVERY_CODE_GROUPS = 4
RECOVERY_CODE_GROUP_LENGTH = 4
RECOVERY_CODE_LENGTH = RECOVERY_CODE_GROUPS * RECOVERY_CODE_GROUP_LENGTH
RECOVERY_CODE_BITS = RECOVERY_CODE_LENGTH * math.log2(len(RECOVERY_CODE_ALPHABET))
DEFAULT_RECOVERY_CODES = 10
_RECOVERY_CODES_MAX = 100
_RECOVERY_HASH_SCHEME = "sha256"  # the stored form names its scheme so a later one can sit beside it
_RECOVERY_SALT_BYTES = 16
_RECOVERY_INPUT_MAX = 64
# Spaces, hyphen-minus, and the Unicode hyphens and dashes a word processor or PDF substitutes.
_RECOVERY_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]+")


def new_recovery_codes(n: int = DEFAULT_RECOVERY_CODES) -> tuple[list[str], list[str]]:
    """`n` new codes to show the user once ("k7q2-9vtx-m3pa-h4wc"), and the hashes to store.

    Issuing a new set replaces the old one entirely: store the new hashes in place of the old.
    """
    if not 1 <= n <= _RECOVERY_CODES_MAX:
        raise ValueError(f"n must be between 1 and {_RECOVERY_CODES_MAX}")
    compact_codes: dict[str, None] = {}  # a dict keeps order; a repeat (p ≈ 2^-79) is drawn again
    while len(compact_codes) < n:
        compact_codes[_new_compact_code()] = None
    codes = [_grouped(compact) for compact in compact_codes]
    hashes = [_hash_recovery_code(compact, secrets.token_bytes(_RECOVERY_SALT_BYTES)) for compact in compact_codes]
    return codes, hashes


def use_recovery_code(stored_hashes: Sequence[str], candidate: str) -> list[str] | None:
    """The hashes left once `candidate` is spent, or None when it matches none of them.

    Case, spaces and dashes in `candidate` do not matter. A stored hash that cannot be parsed never
    matches and is kept as it is: this function never drops data it does not understand.
    """
    compact = _normal_recovery_code(candidate)
    if compact is None:
        return None
    matched: int | None = None
    # Every stored hash is compared, in constant time, whether or not an earlier one matched.
    for index, stored in enumerate(stored_hashes):
        if _recovery_hash_matches(stored, compact) and matched is None:
            matched = index
    if matched is None:
        return None
    return [*stored_hashes[:matched], *stored_hashes[matched + 1 :]]


def _new_compact_code() -> str:
    return "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))


def _grouped(compact: str) -> str:
    size = RECOVERY_CODE_GROUP_LENGTH
    return "-".join(compact[start : start + size] for start in range(0, len(compact), size))


def _normal_recovery_code(candidate: str) -> str | None:
    if len(candidate) > _RECOVERY_INPUT_MAX:
        return None
    # NFKC first: full-width letters from an East Asian input method become ASCII.
    compact = _RECOVERY_SEPARATORS.sub("", unicodedata.normalize("NFKC", candidate).lower())
    if len(compact) != RECOVERY_CODE_LENGTH or not set(compact) <= set(RECOVERY_CODE_ALPHABET):
        return None
    return compact


def _recovery_digest(compact: str, salt: bytes) -> bytes:
    return hashlib.sha256(salt + compact.encode("ascii")).digest()


def _hash_recovery_code(compact: str, salt: bytes) -> str:
    return f"{_RECOVERY_HASH_SCHEME}${salt.hex()}${_recovery_digest(compact, salt).hex()}"


def _recovery_hash_matches(stored: str, compact: str) -> bool:
    scheme, _, rest = stored.partition("$")
    salt_hex, _, digest_hex = rest.partition("$")
    try:
        salt, digest = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if scheme != _RECOVERY_HASH_SCHEME or not salt:
        return False
    return hmac.compare_digest(_recovery_digest(compact, salt), digest)


# ---------------------------------------------------------------------------------------------
# WebAuthn (security keys and passkeys), over py_webauthn
#
# py_webauthn verifies everything; the checks repeated here first exist only to say which one
# failed, so the user and the audit log get a reason rather than "verification failed".

# WebAuthn Level 2 (§15.1) recommends 5 to 10 minutes when user verification is preferred: finding
# the key and typing its PIN takes time. Expire stored challenges after the same time.
CEREMONY_TIMEOUT = timedelta(minutes=5)
_USER_HANDLE_MAX_BYTES = 64  # WebAuthn §5.4.3: browsers refuse longer user handles

# What py_webauthn and the libraries below it raise on hostile input besides its own exceptions
# (a COSE key without its fields is a KeyError, a point off the curve a ValueError): all of them
# mean the response is refused, never a server error.
_REFUSED_INPUT = (WebAuthnException, ValueError, TypeError, KeyError, IndexError, UnsupportedAlgorithm)

_T = TypeVar("_T")


@dataclass(frozen=True)
class WebAuthnCredential:
    """A registered security key or passkey, as stored. Nothing in it is secret."""

    credential_id: bytes
    public_key: bytes  # COSE_Key bytes, exactly as the authenticator sent them
    sign_count: int
    transports: tuple[str, ...] = ()  # hints for the browser ("usb", "nfc", "internal", "hybrid"…)
    aaguid: str = "00000000-0000-0000-0000-000000000000"  # authenticator model; zeros when not disclosed
    backed_up: bool = False  # a passkey synced to other devices rather than bound to one


def registration_options(
    rp_id: str,
    rp_name: str,
    user_id: bytes,
    user_name: str,
    existing_credential_ids: Sequence[bytes],
) -> tuple[str, bytes]:
    """Options JSON for navigator.credentials.create(), and the challenge to keep server-side.

    `user_id` is the WebAuthn user handle: random bytes stored with the account, never an email
    address or anything else that names the person (authenticators may show it to others).
    """
    if not 1 <= len(user_id) <= _USER_HANDLE_MAX_BYTES:
        raise ValueError(f"user_id must be 1 to {_USER_HANDLE_MAX_BYTES} bytes")
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_id,
        user_name=user_name,
        timeout=_timeout_ms(),
        # "none": we do not restrict authenticator models, so vendor certificates would only add
        # a privacy cost (attestation can identify the device) and no decision.
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            # A second factor after the password: the server already knows the account, so the
            # key need not store a discoverable credential and use up one of its few slots.
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(existing_credential_ids),
    )
    return webauthn.options_to_json(options), options.challenge


def verify_registration(
    credential_json: str | dict[str, Any],
    *,
    expected_challenge: bytes,
    rp_id: str,
    origin: str,
    require_user_verification: bool = False,
) -> WebAuthnCredential:
    """The new credential to store, from the browser's navigator.credentials.create() response.

    Raises MfaRegistrationError saying which check failed.
    """
    error = MfaRegistrationError
    parsed = _parsed(parse_registration_credential_json, credential_json, error)
    _check_client_data(parsed.response.client_data_json, expected_challenge, origin, error)
    attestation = _parsed(parse_attestation_object, parsed.response.attestation_object, error)
    _check_authenticator_data(attestation.auth_data, rp_id, require_user_verification, error)
    try:
        verified = webauthn.verify_registration_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=require_user_verification,
        )
        # py_webauthn checks the COSE key's structure only; loading it refuses now, rather than at
        # every later sign-in, a key no signature could ever be verified with (a point off the curve).
        decoded_public_key_to_cryptography(decode_credential_public_key(verified.credential_public_key))
    except _REFUSED_INPUT as exc:
        raise error(
            MfaFailure.VERIFICATION_FAILED,
            "the security key's registration response could not be verified (unsupported or invalid key, "
            "or invalid attestation); try again, or register a different key",
        ) from exc
    return WebAuthnCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=tuple(transport.value for transport in parsed.response.transports or ()),
        aaguid=verified.aaguid,
        backed_up=verified.credential_backed_up,
    )


def authentication_options(rp_id: str, allowed_credential_ids: Sequence[bytes]) -> tuple[str, bytes]:
    """Options JSON for navigator.credentials.get(), and the challenge to keep server-side."""
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        timeout=_timeout_ms(),
        allow_credentials=_descriptors(allowed_credential_ids),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return webauthn.options_to_json(options), options.challenge


def asserted_credential_id(credential_json: str | dict[str, Any]) -> bytes:
    """Which credential a navigator.credentials.get() response claims to come from.

    Use it to look up the stored `WebAuthnCredential` to pass to `verify_authentication`; the claim
    itself proves nothing until that verification succeeds.
    """
    return _parsed(parse_authentication_credential_json, credential_json, MfaError).raw_id


def verify_authentication(
    credential_json: str | dict[str, Any],
    *,
    expected_challenge: bytes,
    rp_id: str,
    origin: str,
    credential: WebAuthnCredential,
    require_user_verification: bool = False,
) -> int:
    """The new sign count to store, once the navigator.credentials.get() response is verified.

    Raises MfaError saying which check failed.
    """
    error = MfaError
    parsed = _parsed(parse_authentication_credential_json, credential_json, error)
    if parsed.raw_id != credential.credential_id:
        raise error(
            MfaFailure.UNKNOWN_CREDENTIAL,
            "this security key is not registered to this account; use a key you registered, or a recovery code",
        )
    _check_client_data(parsed.response.client_data_json, expected_challenge, origin, error)
    auth_data = _parsed(parse_authenticator_data, parsed.response.authenticator_data, error)
    _check_authenticator_data(auth_data, rp_id, require_user_verification, error)
    _check_sign_count(auth_data.sign_count, credential.sign_count)
    try:
        verified = webauthn.verify_authentication_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=credential.public_key,
            credential_current_sign_count=credential.sign_count,
            require_user_verification=require_user_verification,
        )
    except _REFUSED_INPUT as exc:
        raise error(
            MfaFailure.VERIFICATION_FAILED,
            "the security key's signature did not verify; try again with the same key, or use a recovery code",
        ) from exc
    return verified.new_sign_count


def _timeout_ms() -> int:
    return int(CEREMONY_TIMEOUT.total_seconds() * 1000)


def _descriptors(credential_ids: Sequence[bytes]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=credential_id) for credential_id in credential_ids]


def _parsed(parse: Callable[[Any], _T], value: Any, error: type[MfaError]) -> _T:
    try:
        return parse(value)
    except _REFUSED_INPUT as exc:
        raise error(
            MfaFailure.MALFORMED_RESPONSE,
            "the browser's security key response was incomplete or malformed; try again, and update the "
            "browser if this repeats",
        ) from exc


def _check_client_data(raw: bytes, expected_challenge: bytes, origin: str, error: type[MfaError]) -> None:
    client_data: CollectedClientData = _parsed(parse_client_data_json, raw, error)
    # Plain comparisons from here on: challenges, origins and credential ids are not secrets.
    if client_data.challenge != expected_challenge:
        raise error(
            MfaFailure.CHALLENGE_MISMATCH,
            "the security key answered an expired or different request; start again and use the key once",
        )
    if client_data.origin != origin:
        # The received origin is not echoed: it is whatever the sender chose to write.
        raise error(
            MfaFailure.ORIGIN_MISMATCH,
            f"the security key was used on a page outside {origin}; sign in at {origin} itself",
        )


def _check_authenticator_data(
    auth_data: AuthenticatorData, rp_id: str, require_user_verification: bool, error: type[MfaError]
) -> None:
    if auth_data.rp_id_hash != hashlib.sha256(rp_id.encode("utf-8")).digest():
        raise error(
            MfaFailure.RP_ID_MISMATCH,
            f"the security key signed for a site other than {rp_id}; sign in at {rp_id} itself",
        )
    if not auth_data.flags.up:
        raise error(MfaFailure.USER_NOT_PRESENT, "touch the security key when it asks, then try again")
    if require_user_verification and not auth_data.flags.uv:
        raise error(
            MfaFailure.USER_NOT_VERIFIED,
            "this account needs the security key to check your PIN, fingerprint or face; "
            "use a key that can, and complete its prompt",
        )


def _check_sign_count(received: int, stored: int) -> None:
    # WebAuthn §7.2 step 21: when either counter is non-zero the new one must be greater, or two
    # copies of the key are in use. Counters stay at 0 for authenticators that keep none (synced
    # passkeys); those are accepted.
    if (received or stored) and received <= stored:
        raise MfaError(
            MfaFailure.SIGN_COUNT_NOT_INCREASED,
            "this security key's use counter went backwards, which happens when a key has been copied; "
            "sign in with another key or a recovery code, and tell your security officer about this key",
        )
