"""MFA: TOTP with a fixed clock, one-time recovery codes, and WebAuthn against a software authenticator.

The authenticator below builds real WebAuthn responses byte by byte (its own CBOR encoder, its own
P-256 key), sharing no code with the verifier, so the end-to-end tests prove the wiring and not
just that a library agrees with itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import struct
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from bookwarden.core.errors import BookwardenError, InvalidInput
from bookwarden.identity.mfa import service as mfa
from bookwarden.identity.mfa.service import MfaError, MfaFailure, MfaRegistrationError

# ---------------------------------------------------------------------------------------------
# TOTP

NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)
STEP = timedelta(seconds=30)


@pytest.fixture
def secret() -> str:
    return mfa.new_totp_secret()


def code_at(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def test_new_secret_is_160_random_bits_in_base32():
    first, second = mfa.new_totp_secret(), mfa.new_totp_secret()
    assert len(base64.b32decode(first)) == 20
    assert re.fullmatch(r"[A-Z2-7]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    ("unix_time", "expected_code"),
    # RFC 6238 Appendix B (SHA-1 secret "12345678901234567890"), last six of the eight digits:
    # an anchor independent of pyotp, which the other tests use to produce codes.
    [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_rfc_6238_test_vectors_are_accepted(unix_time, expected_code):
    rfc_secret = base64.b32encode(b"12345678901234567890").decode()
    moment = datetime.fromtimestamp(unix_time, UTC)
    step = mfa.verify_totp(rfc_secret, expected_code, last_used_step=None, now=moment, window=0)
    assert step == unix_time // 30


def test_provisioning_uri_names_issuer_and_account(secret):
    uri = mfa.provisioning_uri(secret, "alice@springfield.example", "Springfield Library")
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    assert (parsed.scheme, parsed.netloc) == ("otpauth", "totp")
    assert unquote(parsed.path) == "/Springfield Library:alice@springfield.example"
    assert query["issuer"] == ["Springfield Library"]
    assert query["secret"] == [secret]
    # An authenticator app reading it back shows the same codes.
    assert pyotp.parse_uri(uri).at(NOW) == code_at(secret, NOW)


@pytest.mark.parametrize(("account", "issuer"), [("alice", "Library: Main"), ("a:lice", "Library"), ("alice", " ")])
def test_provisioning_uri_refuses_labels_apps_cannot_show(secret, account, issuer):
    with pytest.raises(InvalidInput):
        mfa.provisioning_uri(secret, account, issuer)


def test_current_code_is_accepted_and_its_step_returned(secret):
    step = mfa.verify_totp(secret, code_at(secret, NOW), last_used_step=None, now=NOW)
    assert step == mfa.totp_step(NOW) == int(NOW.timestamp()) // 30


@pytest.mark.parametrize("offset", [-1, 1])
def test_code_one_step_either_side_is_accepted(secret, offset):
    code = code_at(secret, NOW + offset * STEP)
    assert mfa.verify_totp(secret, code, last_used_step=None, now=NOW) == mfa.totp_step(NOW) + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_code_two_steps_away_is_refused(secret, offset):
    code = code_at(secret, NOW + offset * STEP)
    assert mfa.verify_totp(secret, code, last_used_step=None, now=NOW) is None


def test_window_zero_accepts_only_the_current_step(secret):
    assert mfa.verify_totp(secret, code_at(secret, NOW - STEP), last_used_step=None, now=NOW, window=0) is None
    assert mfa.verify_totp(secret, code_at(secret, NOW), last_used_step=None, now=NOW, window=0) is not None


def test_replaying_an_accepted_code_is_refused(secret):
    code = code_at(secret, NOW)
    step = mfa.verify_totp(secret, code, last_used_step=None, now=NOW)
    assert step is not None
    assert mfa.verify_totp(secret, code, last_used_step=step, now=NOW) is None
    # Still refused a few seconds later, while the code is still on the user's screen.
    assert mfa.verify_totp(secret, code, last_used_step=step, now=NOW + timedelta(seconds=20)) is None


def test_older_code_is_refused_once_a_newer_one_was_used(secret):
    newer = mfa.verify_totp(secret, code_at(secret, NOW + STEP), last_used_step=None, now=NOW)
    assert newer == mfa.totp_step(NOW) + 1
    assert mfa.verify_totp(secret, code_at(secret, NOW), last_used_step=newer, now=NOW) is None


def test_next_code_is_accepted_after_the_previous_one(secret):
    first = mfa.verify_totp(secret, code_at(secret, NOW), last_used_step=None, now=NOW)
    later = NOW + STEP
    assert mfa.verify_totp(secret, code_at(secret, later), last_used_step=first, now=later) == first + 1


def test_code_typed_with_spaces_is_accepted(secret):
    code = code_at(secret, NOW)
    assert mfa.verify_totp(secret, f" {code[:3]} {code[3:]}\t", last_used_step=None, now=NOW) is not None


@pytest.mark.parametrize(
    "malformed",
    ["", "12345", "1234567", "12a456", "12-456", "+12345", "١٢٣٤٥٦", "１２３４５６", "123456" * 10],
)
def test_malformed_codes_are_refused(secret, malformed):
    assert mfa.verify_totp(secret, malformed, last_used_step=None, now=NOW) is None


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=32))
def test_only_the_right_six_digits_are_ever_accepted(text):
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    valid = {code_at(secret, NOW + k * STEP) for k in (-1, 0, 1)}
    accepted = mfa.verify_totp(secret, text, last_used_step=None, now=NOW) is not None
    assert accepted == ("".join(text.split()) in valid)


def test_naive_clock_is_refused(secret):
    with pytest.raises(ValueError, match="timezone-aware"):
        mfa.verify_totp(secret, "123456", last_used_step=None, now=NOW.replace(tzinfo=None))


def test_negative_window_is_refused(secret):
    with pytest.raises(ValueError):
        mfa.verify_totp(secret, "123456", last_used_step=None, now=NOW, window=-1)


# ---------------------------------------------------------------------------------------------
# Recovery codes

ALPHABET = mfa.RECOVERY_CODE_ALPHABET
CODE_FORMAT = re.compile(rf"[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{3}}")


def test_ten_distinct_codes_by_default_each_with_its_hash():
    codes, hashes = mfa.new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    assert len(hashes) == len(set(hashes)) == 10


def test_asked_number_of_codes():
    codes, hashes = mfa.new_recovery_codes(3)
    assert len(codes) == len(hashes) == 3


def test_codes_are_grouped_lower_case_without_ambiguous_characters():
    codes, _ = mfa.new_recovery_codes(50)
    for code in codes:
        assert CODE_FORMAT.fullmatch(code)
        assert not set(code) & set("0o1liI")


def test_codes_carry_at_least_50_bits():
    assert len(ALPHABET) == len(set(ALPHABET)) == 31
    assert mfa.RECOVERY_CODE_BITS == mfa.RECOVERY_CODE_LENGTH * math.log2(31) >= 79
    # Every letter of the alphabet turns up: the bits are really spread over all 31.
    codes, _ = mfa.new_recovery_codes(100)
    assert set("".join(codes).replace("-", "")) == set(ALPHABET)


def test_hashes_reveal_no_code_and_are_salted():
    codes, hashes = mfa.new_recovery_codes()
    for code, stored in zip(codes, hashes, strict=True):
        compact = code.replace("-", "")
        # Scheme, salt and digest, all hex: the code (or any part of it) is not among the stored fields.
        # (Compared field by field, not as substrings: a 4-character group of a code turns up in 64
        # hex digits by chance in about 2.6% of runs, which said nothing about the hash.)
        scheme, salt_hex, digest_hex = stored.split("$")
        assert bytes.fromhex(salt_hex) and len(bytes.fromhex(digest_hex)) >= 32
        assert not {code, compact, code.upper(), *code.split("-")} & {scheme, salt_hex, digest_hex}
        # Salted: the same code hashed again gives another row; not the bare SHA-256 of the code,
        # so one guess cannot be tested against every row at once.
        assert mfa._hash_recovery_code(compact, bytes(16)) != mfa._hash_recovery_code(compact, b"\x01" * 16)
        assert hashlib.sha256(compact.encode()).hexdigest() != digest_hex
    assert len({stored.split("$")[1] for stored in hashes}) == len(hashes)  # a salt of its own each


def test_a_code_works_once_and_removes_only_its_own_hash():
    codes, hashes = mfa.new_recovery_codes()
    remaining = mfa.use_recovery_code(hashes, codes[3])
    assert remaining == hashes[:3] + hashes[4:]
    assert mfa.use_recovery_code(remaining, codes[3]) is None
    assert mfa.use_recovery_code(remaining, codes[4]) == hashes[:3] + hashes[5:]


@pytest.mark.parametrize(
    "typed",
    [
        lambda code: code.upper().replace("-", " "),
        lambda code: code.replace("-", ""),
        lambda code: f"  {code}\n",
        lambda code: code.replace("-", "\u2013"),  # en dash, as a word processor prints it
        lambda code: "".join(chr(ord(c) + 0xFEE0) for c in code.replace("-", "")),  # full-width
    ],
    ids=["upper-case-with-spaces", "no-dashes", "surrounding-whitespace", "en-dashes", "full-width"],
)
def test_codes_are_accepted_however_they_are_typed(typed):
    codes, hashes = mfa.new_recovery_codes(2)
    assert mfa.use_recovery_code(hashes, typed(codes[0])) == hashes[1:]


def test_upper_case_code_with_spaces_is_accepted():
    codes, hashes = mfa.new_recovery_codes(1)
    groups = codes[0].upper().split("-")  # e.g. "K7Q2 9VTX M3PA H4WC"
    assert mfa.use_recovery_code(hashes, " ".join(groups)) == []


def test_wrong_or_malformed_codes_are_refused():
    codes, hashes = mfa.new_recovery_codes()
    almost = codes[0][:-1] + ("2" if codes[0][-1] != "2" else "3")
    for candidate in (almost, "", codes[0][:-1], codes[0] + "a", "x" * 10_000, codes[0].replace("a", "@")):
        if candidate != codes[0]:
            assert mfa.use_recovery_code(hashes, candidate) is None


def test_unreadable_stored_hash_never_matches_and_is_kept():
    codes, hashes = mfa.new_recovery_codes(1)
    stored = ["garbage", "sha256$zz$00", "md5$00$00", "sha256$$" + "0" * 64, *hashes]
    assert mfa.use_recovery_code(stored, codes[0]) == stored[:-1]


@settings(max_examples=50, deadline=None)
@given(
    separators=st.lists(st.sampled_from(["", " ", "-", "  ", "\t", "\u2010"]), min_size=15, max_size=15),
    upper=st.lists(st.booleans(), min_size=16, max_size=16),
)
def test_any_casing_and_separators_are_accepted(separators, upper):
    codes, hashes = mfa.new_recovery_codes(1)
    letters = [c.upper() if up else c for c, up in zip(codes[0].replace("-", ""), upper, strict=True)]
    typed = letters[0] + "".join(sep + letter for sep, letter in zip(separators, letters[1:], strict=True))
    assert mfa.use_recovery_code(hashes, typed) == []


_, STORED_HASHES = mfa.new_recovery_codes()


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30))
def test_arbitrary_text_never_spends_a_code(text):
    assert mfa.use_recovery_code(STORED_HASHES, text) is None


def test_n_out_of_range_is_refused():
    for n in (0, -1, 101):
        with pytest.raises(ValueError):
            mfa.new_recovery_codes(n)


# ---------------------------------------------------------------------------------------------
# WebAuthn: a software authenticator

RP_ID = "springfield.bookwarden.example"
ORIGIN = f"https://{RP_ID}"
RP_NAME = "Springfield Public Library"

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cbor(value: Any) -> bytes:
    """Enough of CBOR (RFC 8949) for an attestation object and a COSE key: ints, bytes, text, maps."""
    if isinstance(value, int):
        return _cbor_head(0, value) if value >= 0 else _cbor_head(1, -1 - value)
    if isinstance(value, bytes):
        return _cbor_head(2, len(value)) + value
    if isinstance(value, str):
        encoded = value.encode()
        return _cbor_head(3, len(encoded)) + encoded
    if isinstance(value, dict):
        return _cbor_head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(f"cannot encode {type(value).__name__}")


def _cbor_head(major: int, argument: int) -> bytes:
    if argument < 24:
        return bytes([major << 5 | argument])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | extra]) + argument.to_bytes(size, "big")
    raise ValueError("argument too large")


def test_cbor_encoder_matches_rfc_8949_examples():
    assert cbor(0) == bytes.fromhex("00")
    assert cbor(23) == bytes.fromhex("17")
    assert cbor(24) == bytes.fromhex("1818")
    assert cbor(1000) == bytes.fromhex("1903e8")
    assert cbor(-1) == bytes.fromhex("20")
    assert cbor(-1000) == bytes.fromhex("3903e7")
    assert cbor(b"\x01\x02\x03\x04") == bytes.fromhex("4401020304")
    assert cbor("IETF") == bytes.fromhex("6449455446")
    assert cbor({1: 2, 3: 4}) == bytes.fromhex("a201020304")


@dataclass
class SoftwareAuthenticator:
    """A security key in software: a P-256 key pair, a credential id and a signature counter."""

    counts_signatures: bool = True
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        # COSE_Key: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y.
        return cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def create(self, options_json: str, *, origin: str = ORIGIN, rp_id: str | None = None) -> dict[str, Any]:
        """navigator.credentials.create(): a registration response with attestation "none"."""
        options = json.loads(options_json)
        client_data = _client_data("webauthn.create", options["challenge"], origin)
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + self.cose_public_key()
        auth_data = self._authenticator_data(rp_id or options["rp"]["id"], FLAG_UP | FLAG_UV | FLAG_AT) + attested
        attestation_object = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["usb", "nfc"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    def get(
        self, options_json: str, *, origin: str = ORIGIN, rp_id: str | None = None, flags: int = FLAG_UP | FLAG_UV
    ) -> dict[str, Any]:
        """navigator.credentials.get(): an assertion signed over authenticatorData || SHA-256(clientDataJSON)."""
        options = json.loads(options_json)
        client_data = _client_data("webauthn.get", options["challenge"], origin)
        auth_data = self._authenticator_data(rp_id or options["rpId"], flags)
        signature = self.private_key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
            },
            "clientExtensionResults": {},
        }

    def _authenticator_data(self, rp_id: str, flags: int) -> bytes:
        if self.counts_signatures:
            self.sign_count += 1
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", self.sign_count)


def _client_data(ceremony: str, challenge_b64url: str, origin: str) -> bytes:
    return json.dumps(
        {"type": ceremony, "challenge": challenge_b64url, "origin": origin, "crossOrigin": False},
        separators=(",", ":"),
    ).encode()


@pytest.fixture
def user_id() -> bytes:
    return os.urandom(16)


@pytest.fixture
def authenticator() -> SoftwareAuthenticator:
    return SoftwareAuthenticator()


def register(authenticator: SoftwareAuthenticator, user_id: bytes) -> mfa.WebAuthnCredential:
    options, challenge = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice@springfield.example", [])
    response = authenticator.create(options)
    return mfa.verify_registration(response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN)


@pytest.fixture
def credential(authenticator, user_id) -> mfa.WebAuthnCredential:
    return register(authenticator, user_id)


@pytest.fixture
def sign_in() -> tuple[str, bytes]:
    """Options for one sign-in ceremony, and the challenge the server keeps."""
    return mfa.authentication_options(RP_ID, [])


def test_registration_options_ask_for_no_attestation_and_exclude_existing_keys(user_id):
    existing = [os.urandom(16), os.urandom(32)]
    options_json, challenge = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice@springfield.example", existing)
    options = json.loads(options_json)
    assert from_b64url(options["challenge"]) == challenge
    assert len(challenge) >= 16
    assert options["rp"] == {"id": RP_ID, "name": RP_NAME}
    assert from_b64url(options["user"]["id"]) == user_id
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert [from_b64url(c["id"]) for c in options["excludeCredentials"]] == existing
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["timeout"] == 300_000


def test_each_ceremony_gets_a_fresh_challenge(user_id):
    _, first = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice", [])
    _, second = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice", [])
    assert first != second


def test_user_handle_over_64_bytes_is_refused():
    with pytest.raises(ValueError):
        mfa.registration_options(RP_ID, RP_NAME, os.urandom(65), "alice", [])


def test_software_key_registers_end_to_end(authenticator, user_id):
    credential = register(authenticator, user_id)
    assert credential.credential_id == authenticator.credential_id
    assert credential.public_key == authenticator.cose_public_key()
    assert credential.sign_count == 1
    assert credential.transports == ("usb", "nfc")
    assert credential.aaguid == "00000000-0000-0000-0000-000000000000"
    assert credential.backed_up is False


def test_registration_accepts_the_response_as_json_text(authenticator, user_id):
    options, challenge = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice", [])
    response = json.dumps(authenticator.create(options))
    credential = mfa.verify_registration(response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN)
    assert credential.credential_id == authenticator.credential_id


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"challenge": os.urandom(64)}, MfaFailure.CHALLENGE_MISMATCH),
        ({"origin": "https://springfield.bookwarden.example.evil.example"}, MfaFailure.ORIGIN_MISMATCH),
        ({"rp_id": "evil.example"}, MfaFailure.RP_ID_MISMATCH),
    ],
    ids=["wrong-challenge", "wrong-origin", "wrong-rp-id"],
)
def test_registration_is_refused_when_a_check_fails(authenticator, user_id, tamper, reason):
    options, challenge = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice", [])
    response = authenticator.create(options, origin=tamper.get("origin", ORIGIN), rp_id=tamper.get("rp_id", RP_ID))
    with pytest.raises(MfaRegistrationError) as refused:
        mfa.verify_registration(
            response, expected_challenge=tamper.get("challenge", challenge), rp_id=RP_ID, origin=ORIGIN
        )
    assert refused.value.reason is reason
    assert (refused.value.status, refused.value.slug) == (422, "mfa-registration-failed")


@pytest.mark.parametrize(
    "malformed",
    ["not json", "[]", {}, {"id": "x", "rawId": "x", "type": "public-key", "response": {}}],
    ids=["text", "array", "empty", "no-response-fields"],
)
def test_malformed_registration_response_is_refused(malformed):
    with pytest.raises(MfaRegistrationError) as refused:
        mfa.verify_registration(malformed, expected_challenge=b"c" * 32, rp_id=RP_ID, origin=ORIGIN)
    assert refused.value.reason is MfaFailure.MALFORMED_RESPONSE


def test_registration_with_a_broken_public_key_is_refused(authenticator, user_id):
    options, challenge = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice", [])
    authenticator.cose_public_key = lambda: cbor({1: 2, 3: -7, -1: 1, -2: bytes(32), -3: bytes(32)})  # not on P-256
    response = authenticator.create(options)
    with pytest.raises(MfaRegistrationError) as refused:
        mfa.verify_registration(response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN)
    assert refused.value.reason is MfaFailure.VERIFICATION_FAILED


def test_authentication_options_list_the_allowed_keys():
    allowed = [os.urandom(32)]
    options_json, challenge = mfa.authentication_options(RP_ID, allowed)
    options = json.loads(options_json)
    assert from_b64url(options["challenge"]) == challenge
    assert options["rpId"] == RP_ID
    assert options["userVerification"] == "preferred"
    assert [from_b64url(c["id"]) for c in options["allowCredentials"]] == allowed


def test_signed_assertion_is_accepted_and_returns_the_new_sign_count(authenticator, credential):
    options, challenge = mfa.authentication_options(RP_ID, [credential.credential_id])
    response = authenticator.get(options)
    assert mfa.asserted_credential_id(response) == credential.credential_id
    new_count = mfa.verify_authentication(
        response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
    )
    assert new_count == 2

    # The next sign-in, with the stored count updated, works too.
    stored = replace(credential, sign_count=new_count)
    options, challenge = mfa.authentication_options(RP_ID, [credential.credential_id])
    next_count = mfa.verify_authentication(
        json.dumps(authenticator.get(options)),
        expected_challenge=challenge,
        rp_id=RP_ID,
        origin=ORIGIN,
        credential=stored,
    )
    assert next_count == 3


def test_tampered_signature_is_refused(authenticator, credential, sign_in):
    options, challenge = sign_in
    response = authenticator.get(options)
    signature = bytearray(from_b64url(response["response"]["signature"]))
    signature[-1] ^= 0x01
    response["response"]["signature"] = b64url(bytes(signature))
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.VERIFICATION_FAILED
    assert (refused.value.status, refused.value.slug) == (401, "mfa-failed")


def test_tampered_authenticator_data_is_refused(authenticator, credential, sign_in):
    options, challenge = sign_in
    response = authenticator.get(options)
    auth_data = bytearray(from_b64url(response["response"]["authenticatorData"]))
    auth_data[-1] += 5  # a higher counter than the key signed
    response["response"]["authenticatorData"] = b64url(bytes(auth_data))
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.VERIFICATION_FAILED


def test_assertion_for_another_challenge_is_refused(authenticator, credential, sign_in):
    options, _ = sign_in
    _, current_challenge = mfa.authentication_options(RP_ID, [])
    response = authenticator.get(options)
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=current_challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.CHALLENGE_MISMATCH


def test_assertion_made_on_another_origin_is_refused(authenticator, credential, sign_in):
    options, challenge = sign_in
    response = authenticator.get(options, origin="https://springfield-bookwarden.example")
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.ORIGIN_MISMATCH
    assert "springfield-bookwarden.example" not in refused.value.detail


def test_assertion_for_another_rp_id_is_refused(authenticator, credential, sign_in):
    options, challenge = sign_in
    response = authenticator.get(options, rp_id="bookwarden.example")
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.RP_ID_MISMATCH


def test_assertion_without_user_presence_is_refused(authenticator, credential, sign_in):
    options, challenge = sign_in
    response = authenticator.get(options, flags=FLAG_UV)
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.USER_NOT_PRESENT


def test_user_verification_is_enforced_only_when_required(authenticator, credential):
    options, challenge = mfa.authentication_options(RP_ID, [])
    response = authenticator.get(options, flags=FLAG_UP)
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response,
            expected_challenge=challenge,
            rp_id=RP_ID,
            origin=ORIGIN,
            credential=credential,
            require_user_verification=True,
        )
    assert refused.value.reason is MfaFailure.USER_NOT_VERIFIED
    accepted = mfa.verify_authentication(
        response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
    )
    assert accepted == authenticator.sign_count


def test_replayed_assertion_is_refused(authenticator, credential, sign_in):
    options, challenge = sign_in
    response = authenticator.get(options)
    new_count = mfa.verify_authentication(
        response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
    )
    # Even if the caller failed to discard the challenge, the stored counter stops the replay.
    stored = replace(credential, sign_count=new_count)
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=stored)
    assert refused.value.reason is MfaFailure.SIGN_COUNT_NOT_INCREASED


def test_counter_going_backwards_signals_a_cloned_key(authenticator, credential, sign_in):
    options, challenge = sign_in
    clone = replace(authenticator)  # same key and id, counter left behind at registration
    stored = replace(credential, sign_count=7)  # the original has signed six more times since
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            clone.get(options), expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=stored
        )
    assert refused.value.reason is MfaFailure.SIGN_COUNT_NOT_INCREASED
    assert "7" not in refused.value.detail


def test_counter_dropping_to_zero_is_refused(authenticator, credential, sign_in):
    # WebAuthn §7.2: one non-zero counter is enough to require an increase; a key that counted
    # before and now reports 0 is as suspect as one that went backwards.
    options, challenge = sign_in
    silent_copy = replace(authenticator, counts_signatures=False, sign_count=0)
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            silent_copy.get(options), expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.SIGN_COUNT_NOT_INCREASED


def test_key_that_keeps_no_counter_is_accepted(user_id):
    passkey = SoftwareAuthenticator(counts_signatures=False)
    credential = register(passkey, user_id)
    assert credential.sign_count == 0
    for _ in range(2):
        options, challenge = mfa.authentication_options(RP_ID, [])
        count = mfa.verify_authentication(
            passkey.get(options), expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
        assert count == 0


def test_assertion_from_an_unregistered_key_is_refused(credential, sign_in):
    options, challenge = sign_in
    stranger = SoftwareAuthenticator()
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            stranger.get(options), expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.UNKNOWN_CREDENTIAL


def test_assertion_signed_by_another_key_under_the_registered_id_is_refused(authenticator, credential, sign_in):
    options, challenge = sign_in
    impostor = SoftwareAuthenticator(credential_id=authenticator.credential_id, sign_count=50)
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            impostor.get(options), expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.VERIFICATION_FAILED


def test_registration_response_cannot_be_used_to_sign_in(authenticator, credential, user_id):
    options, challenge = mfa.registration_options(RP_ID, RP_NAME, user_id, "alice", [])
    response = authenticator.create(options)
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.MALFORMED_RESPONSE


@pytest.mark.parametrize("malformed", ["{", {"id": 1}, {"id": "AA", "rawId": "AA", "type": "other", "response": {}}])
def test_malformed_assertion_is_refused(credential, malformed):
    with pytest.raises(MfaError) as refused:
        mfa.verify_authentication(
            malformed, expected_challenge=b"c" * 32, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    assert refused.value.reason is MfaFailure.MALFORMED_RESPONSE


def test_errors_are_typed_and_carry_no_challenge_or_signature(authenticator, credential, sign_in):
    options, challenge = sign_in
    response = authenticator.get(options)
    response["response"]["signature"] = b64url(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    with pytest.raises(BookwardenError) as refused:
        mfa.verify_authentication(
            response, expected_challenge=challenge, rp_id=RP_ID, origin=ORIGIN, credential=credential
        )
    detail = refused.value.detail
    for secretish in (b64url(challenge), challenge.hex(), response["response"]["signature"]):
        assert secretish not in detail
