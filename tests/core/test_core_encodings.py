"""The one JSON encoding for what is hashed or signed (core/canonical.py), and the one CSV guard (core/csv_safety.py).

RFC 8785 is checked against its published vectors; each site that moved to it is shown to produce the
bytes it produced before, over every shape of input it sees, since hashes and signatures of those bytes
are stored (certificates) or in people's mailboxes (links). The sites that stay on the pre-JCS form are
pinned byte for byte. No database: these are pure functions.
"""

from __future__ import annotations

import ast
import base64
import csv
import enum
import io
import json
import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import example, given
from hypothesis import strategies as st

import bookwarden.core
from bookwarden.audit import events, signing, verify
from bookwarden.audit.events import Event
from bookwarden.core.canonical import (
    MAX_SAFE_INTEGER,
    ascii_sorted_json,
    ascii_sorted_json_fast,
    canonical_json,
    es_number,
)
from bookwarden.core.csv_safety import FORMULA_STARTS, spreadsheet_safe
from bookwarden.crypto.master import MasterKeys
from bookwarden.identity import links
from bookwarden.identity.links import LinkClaims, LinkPurpose
from bookwarden.identity.saml import config as saml_config
from bookwarden.privacy.subjects import erasure


def pre_jcs(value) -> bytes:
    """What links.sign and erasure.signed_bytes encoded before RFC 8785, verbatim."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# -- RFC 8785 against its published vectors ---------------------------------------------------------

# RFC 8785 Appendix B, "Number Serialization Samples": IEEE-754 double (hex) -> its JSON text.
APPENDIX_B = [
    ("0000000000000000", "0"),  # zero
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),  # min pos number
    ("8000000000000001", "-5e-324"),  # min neg number
    ("7fefffffffffffff", "1.7976931348623157e+308"),  # max pos number
    ("ffefffffffffffff", "-1.7976931348623157e+308"),  # max neg number
    ("4340000000000000", "9007199254740992"),  # max pos int
    ("c340000000000000", "-9007199254740992"),  # max neg int
    ("4430000000000000", "295147905179352830000"),  # ~2**68
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # round to even
]
# Appendix B's two samples that must be refused: NaN and Infinity.
APPENDIX_B_REFUSED = ["7fffffffffffffff", "7ff0000000000000"]


def double(hex_bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(hex_bits))[0]


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_numbers_are_written_as_rfc_8785_appendix_b_shows(bits, text):
    assert es_number(double(bits)) == text
    assert canonical_json([double(bits)]) == f"[{text}]".encode()


@pytest.mark.parametrize("bits", [*APPENDIX_B_REFUSED, "fff0000000000000"])
def test_nan_and_the_infinities_are_refused(bits):
    with pytest.raises(ValueError, match="not a JSON number"):
        canonical_json({"n": double(bits)})


# The reference test data of cyberphone/json-canonicalization (testdata/input/*.json and the expected
# UTF-8 bytes in testdata/outhex/*.txt), by RFC 8785's first author. "values" is also RFC 8785 §3.2.2's
# example and "weird" its §3.2.3 sorting example's kin (astral characters, DEL, </script>).
CYBERPHONE = {
    "arrays": (
        '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]',
        "5b 35 36 2c 7b 22 31 22 3a 5b 5d 2c 22 31 30 22 3a 6e 75 6c 6c 2c 22 64 22 3a 74 72 75 65 7d 5d",
    ),
    "french": (
        '{\n  "peach": "This sorting order",\n  "péché": "is wrong according to French",\n'
        '  "pêche": "but canonicalization MUST",\n  "sin":   "ignore locale"\n}',
        "7b 22 70 65 61 63 68 22 3a 22 54 68 69 73 20 73 6f 72 74 69 6e 67 20 6f 72 64 65 72 22 2c 22 70"
        " c3 a9 63 68 c3 a9 22 3a 22 69 73 20 77 72 6f 6e 67 20 61 63 63 6f 72 64 69 6e 67 20 74 6f 20 46"
        " 72 65 6e 63 68 22 2c 22 70 c3 aa 63 68 65 22 3a 22 62 75 74 20 63 61 6e 6f 6e 69 63 61 6c 69 7a"
        " 61 74 69 6f 6e 20 4d 55 53 54 22 2c 22 73 69 6e 22 3a 22 69 67 6e 6f 72 65 20 6c 6f 63 61 6c 65"
        " 22 7d",
    ),
    "structures": (
        '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n  "a": { },\n'
        '  "111": [ {"e": "yes","E": "no" } ],\n  "A": { }\n}',
        "7b 22 22 3a 22 65 6d 70 74 79 22 2c 22 31 22 3a 7b 22 5c 6e 22 3a 35 36 2c 22 66 22 3a 7b 22 46"
        " 22 3a 35 2c 22 66 22 3a 22 68 69 22 7d 7d 2c 22 31 30 22 3a 7b 7d 2c 22 31 31 31 22 3a 5b 7b 22"
        " 45 22 3a 22 6e 6f 22 2c 22 65 22 3a 22 79 65 73 22 7d 5d 2c 22 41 22 3a 7b 7d 2c 22 61 22 3a 7b"
        " 7d 7d",
    ),
    "unicode": (
        '{\n  "Unnormalized Unicode":"A\\u030a"\n}',
        "7b 22 55 6e 6e 6f 72 6d 61 6c 69 7a 65 64 20 55 6e 69 63 6f 64 65 22 3a 22 41 cc 8a 22 7d",
    ),
    "values": (
        '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n'
        '  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
        '  "literals": [null, true, false]\n}',
        "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 75 65 2c 66 61 6c 73 65 5d 2c 22 6e"
        " 75 6d 62 65 72 73 22 3a 5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31 65 2b 33 30"
        " 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37 5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24"
        " 5c 75 30 30 30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d",
    ),
    "weird": (
        '{\n  "\\u20ac": "Euro Sign",\n  "\\r": "Carriage Return",\n  "\\u000a": "Newline",\n  "1": "One",\n'
        '  "\\u0080": "Control\\u007f",\n  "\\ud83d\\ude02": "Smiley",\n'
        '  "\\u00f6": "Latin Small Letter O With Diaeresis",\n  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n'
        '  "</script>": "Browser Challenge"\n}',
        "7b 22 5c 6e 22 3a 22 4e 65 77 6c 69 6e 65 22 2c 22 5c 72 22 3a 22 43 61 72 72 69 61 67 65 20 52"
        " 65 74 75 72 6e 22 2c 22 31 22 3a 22 4f 6e 65 22 2c 22 3c 2f 73 63 72 69 70 74 3e 22 3a 22 42 72"
        " 6f 77 73 65 72 20 43 68 61 6c 6c 65 6e 67 65 22 2c 22 c2 80 22 3a 22 43 6f 6e 74 72 6f 6c 7f 22"
        " 2c 22 c3 b6 22 3a 22 4c 61 74 69 6e 20 53 6d 61 6c 6c 20 4c 65 74 74 65 72 20 4f 20 57 69 74 68"
        " 20 44 69 61 65 72 65 73 69 73 22 2c 22 e2 82 ac 22 3a 22 45 75 72 6f 20 53 69 67 6e 22 2c 22 f0"
        " 9f 98 82 22 3a 22 53 6d 69 6c 65 79 22 2c 22 ef ac b3 22 3a 22 48 65 62 72 65 77 20 4c 65 74 74"
        " 65 72 20 44 61 6c 65 74 20 57 69 74 68 20 44 61 67 65 73 68 22 7d",
    ),
}


@pytest.mark.parametrize("name", sorted(CYBERPHONE))
def test_the_reference_test_data_canonicalizes_to_its_published_bytes(name):
    source, outhex = CYBERPHONE[name]
    assert canonical_json(json.loads(source)) == bytes.fromhex(outhex)


def test_keys_sort_by_utf16_code_units_as_rfc_8785_section_3_2_3_shows():
    # RFC 8785 §3.2.3's example: an astral character (a surrogate pair, 0xD83D...) sorts before U+FB33,
    # although its code point is higher; Python's own sort would put it last.
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    encoded = canonical_json({key: 0 for key in keys}).decode()
    assert list(json.loads(encoded)) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_strings_use_only_the_escapes_ecmascript_uses():
    text = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028é😀'
    assert canonical_json(text) == (
        b'"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f'
        b"\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d"
        b'\\u001e\\u001f\\"\\\\/\x7f' + "\u2028é😀".encode() + b'"'
    )


def test_integers_are_taken_only_where_a_double_holds_them_exactly():
    assert canonical_json([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, True, False, None]) == (
        b"[9007199254740991,-9007199254740991,0,true,false,null]"
    )
    large = [2**53, -(2**53), 39369114248152550]  # the last: 3.936911424815255e16 read back by Python
    assert canonical_json(large) == b"[9007199254740992,-9007199254740992,39369114248152550]"
    for inexact in (2**53 + 1, -(2**53) - 1, 2**60, 2**64, 10**400):
        with pytest.raises(ValueError, match="send it as a string"):
            canonical_json({"n": inexact})


def test_floats_are_written_as_javascript_writes_them():
    assert canonical_json([1.0, -0.0, 0.5, 1e21, 1e20, 1.5e-7, 0.000001, 123.456]) == (
        b"[1,0,0.5,1e+21,100000000000000000000,1.5e-7,0.000001,123.456]"
    )


def test_what_json_cannot_carry_is_refused():
    with pytest.raises(ValueError, match="lone surrogate"):
        canonical_json({"text": "\ud800"})
    with pytest.raises(ValueError, match="lone surrogate"):
        canonical_json({"\udfff": 1})
    with pytest.raises(TypeError, match="keys must be strings"):
        canonical_json({1: "one"})
    for not_json in (b"bytes", {1, 2}, uuid.uuid4(), datetime.now(UTC)):
        with pytest.raises(TypeError, match="not a JSON value"):
            canonical_json({"value": not_json})


class Colour(enum.IntEnum):
    RED = 1


def test_enum_members_are_their_values():
    class Kind(enum.StrEnum):
        INVITE = "invite"

    assert canonical_json({"kind": Kind.INVITE, "colour": Colour.RED}) == b'{"colour":1,"kind":"invite"}'


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_reads_back_as_the_same_value_and_is_its_own_canonical_form(value):
    encoded = canonical_json(value)
    # Read as JavaScript reads it, every number a double: 1.0 and 1 are one number, as JCS intends.
    assert json.loads(encoded, parse_int=float) == as_doubles(value)
    assert canonical_json(json.loads(encoded)) == encoded


def as_doubles(value):
    if isinstance(value, dict):
        return {key: as_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_doubles(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_double_is_written_as_text_that_reads_back_as_itself(number):
    assert float(es_number(number)) == number


# -- sites moved to RFC 8785: the same bytes as before, for everything they encode --------------------

ascii_without_del = st.text(alphabet=st.characters(max_codepoint=0x7E))  # controls included: both escape alike
printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))
counts = st.integers(0, MAX_SAFE_INTEGER)


@given(
    purpose=st.sampled_from(LinkPurpose),
    tenant_id=st.uuids(),
    account_id=st.uuids(),
    expires=counts,
    state=ascii_without_del,
)
def test_a_link_payload_is_the_bytes_links_were_signed_over_before(purpose, tenant_id, account_id, expires, state):
    master = MasterKeys("test", {"test": bytes(32)})
    token = links.sign(master, LinkClaims(purpose, tenant_id, account_id, expires, state))
    payload_text = token.partition(".")[0]
    payload = base64.urlsafe_b64decode(payload_text + "=" * (-len(payload_text) % 4))
    assert payload == pre_jcs(
        {"purpose": purpose.value, "tenant": str(tenant_id), "account": str(account_id), "exp": expires, "state": state}
    )


locations = st.fixed_dictionaries({
    "table": printable,
    "action": st.sampled_from(["deleted", "anonymized", "unlinked", "retained"]),
    "rows": counts,
    "categories": st.lists(printable, max_size=3),
    "sealed_under": st.lists(printable, max_size=3),
})  # fmt: skip
timestamps = st.datetimes(timezones=st.just(UTC)).map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
statements = st.fixed_dictionaries({
    "format": st.just(erasure.FORMAT),
    "certificate_id": st.uuids().map(str),
    "tenant_id": st.uuids().map(str),
    "subject_id": st.uuids().map(str),
    "accounts": counts,
    "request_id": st.none() | st.uuids().map(str),
    "erased_at": timestamps,
    "audit_seq": counts,
    "locations": st.lists(locations, max_size=4),
    "categories": st.lists(printable, max_size=4),
    "rows_erased": counts,
    "subject_keys_destroyed": counts,
    "package_keys_destroyed": counts,
    "files_removed": counts,
    "retained": st.lists(st.fixed_dictionaries({"what": printable, "count": counts, "why": ascii_without_del})),
    "key_id": st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
})  # fmt: skip


@given(statements)
@example({"format": erasure.FORMAT, "why": erasure.RETAINED_AUDIT, "request_id": None, "locations": []})
def test_an_erasure_statement_is_signed_over_the_bytes_certificates_were_signed_over_before(statement):
    assert erasure.signed_bytes(statement) == erasure.STATEMENT_PREFIX + pre_jcs(statement)


def test_a_tampered_certificate_holding_what_jcs_refuses_is_invalid_not_an_error():
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = signing.key_id(public)
    for refused in (2**60, float("nan"), "\ud800"):
        statement = {"format": erasure.FORMAT, "key_id": key_id, "rows_erased": refused}
        verdict = erasure.verify_document({"statement": statement, "signature": "AAAA", "key_id": key_id}, [public])
        assert not verdict.valid and verdict.problem == "the signature does not verify: the statement was altered"


# -- sites kept on the pre-JCS form: pinned, because stored hashes depend on them ---------------------


def test_an_audit_event_is_still_hashed_over_its_ascii_escaped_form():
    event = Event(
        id=uuid.UUID("0190f5c2-7a3e-7c11-8d4e-2b6f0a9c1d3e"),
        occurred_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        actor_kind="account",
        actor_id=uuid.UUID("11111111-2222-4333-8444-555555555555"),
        grant_id=None,
        action="patron.viewed",
        target_kind="patron",
        target_id=uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa"),
        outcome="succeeded",
        source_address="203.0.113.7",
        user_agent="Navigateur été 📚\x7f",
        request_id="req-1",
        details={"fields": ["name", "étagère"], "count": 2, "masked": True, "note": None},
    )
    # Computed by Event.canonical() before core/canonical.py existed.
    assert event.canonical() == (
        b'{"action":"patron.viewed","actor_id":"11111111-2222-4333-8444-555555555555","actor_kind":"account",'
        b'"details":{"count":2,"fields":["name","\\u00e9tag\\u00e8re"],"masked":true,"note":null},'
        b'"grant_id":null,"id":"0190f5c2-7a3e-7c11-8d4e-2b6f0a9c1d3e","occurred_at":"2024-05-06T07:08:09.123456Z",'
        b'"outcome":"succeeded","request_id":"req-1","source_address":"203.0.113.7",'
        b'"target_id":"66666666-7777-4888-9999-aaaaaaaaaaaa","target_kind":"patron",'
        b'"user_agent":"Navigateur \\u00e9t\\u00e9 \\ud83d\\udcda\\u007f"}'
    )
    assert event.body_digest().hex() == "27c72cbe10a8223775faa00929dadcebc70c7d1f6503ff256a25f4a087fd65ee"
    assert canonical_json(json.loads(event.canonical())) != event.canonical()  # why it cannot move to JCS


def test_a_sign_on_settings_digest_is_still_over_its_ascii_escaped_form():
    content = {
        "idp_metadata": '<md:EntityDescriptor entityID="https://idp.example"><md:Organization>Université'
        "</md:Organization></md:EntityDescriptor>",
        "username_attribute": "uid",
        "email_attribute": None,
        "display_name_attribute": "cn",
        "role_mappings": [{"attribute": "affiliation", "value": "bibliothécaire", "role": "librarian"}],
        "create_accounts": True,
        "new_account_kind": "staff",
    }
    # Computed by saml config.digest() before core/canonical.py existed; pending approvals hold such digests.
    assert saml_config.digest(content) == "990e4f09ca2536ae8b7c5c2da179b6d83578387e47e1e2703dc85593beee7239"


def test_the_pre_jcs_form_is_jcs_only_for_ascii_text_without_del():
    assert ascii_sorted_json({"b": "é", "a": "\x7f"}) == b'{"a":"\\u007f","b":"\\u00e9"}'
    assert canonical_json({"b": "é", "a": "\x7f"}) == '{"a":"\x7f","b":"é"}'.encode()
    assert ascii_sorted_json([1.0, 1e16]) == b"[1.0,1e+16]" and canonical_json([1.0, 1e16]) == b"[1,10000000000000000]"


# -- the audit verifier's msgspec draft of the pre-JCS form ------------------------------------------

detail_items = st.none() | st.booleans() | st.integers() | st.text()
details = st.dictionaries(st.text(max_size=8), detail_items | st.lists(detail_items), max_size=4)


@given(details)
def test_the_fast_draft_matches_the_pre_jcs_form_wherever_it_is_ascii_without_del(value):
    draft = ascii_sorted_json_fast(value) if all(-(2**63) <= v < 2**64 for v in _ints(value)) else None
    if draft is not None and draft.isascii() and b"\x7f" not in draft:
        assert draft == ascii_sorted_json(value)
    else:
        assert draft is None or draft != ascii_sorted_json(value)  # and the verifier falls back



class _ColumnName(str):
    """A str subclass, as SQLAlchemy names columns: msgspec refuses it, the reference writes it as text."""


@given(details, st.text(), st.text(), st.integers())
@example({"column": _ColumnName("email")}, "agent", "req", 1)
@example({}, "caf\u00e9", "\x7f", 2**70)
def test_an_event_body_drafted_fast_is_the_reference_form_byte_for_byte(event_details, user_agent, request_id, n):
    """Event.canonical drafts with msgspec on the request path; it must equal the pre-JCS form exactly, or
    every chain hash after the event would fail to verify."""
    body = {"details": event_details, "user_agent": user_agent, "request_id": request_id, "n": n}
    assert events.encode_body(body) == ascii_sorted_json(body)


def _ints(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _ints(item)
    elif isinstance(value, list):
        for item in value:
            yield from _ints(item)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield value


optional_text = st.none() | st.text(max_size=12)


@given(
    actor_id=st.none() | st.uuids(),
    action=st.text(min_size=1, max_size=12),
    outcome=st.sampled_from(["succeeded", "denied", "failed"]),
    user_agent=optional_text,
    source_address=optional_text,
    request_id=optional_text,
    event_details=details,
    occurred_at=st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)),
)
def test_the_verifier_recomputes_every_event_digest_as_event_canonical_does(
    actor_id, action, outcome, user_agent, source_address, request_id, event_details, occurred_at
):
    event = Event(uuid.uuid4(), occurred_at, "account", actor_id, None, action, "patron", uuid.uuid4(), outcome,
                  source_address, user_agent, request_id, event_details)  # fmt: skip
    digest = event.body_digest()
    row = (  # as EVENT_COLUMNS gives it back: jsonb text (spaced, UTF-8), ids and time as text
        action, None if actor_id is None else str(actor_id), "account",
        json.dumps(event_details, ensure_ascii=False), None, str(event.id),
        occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), outcome, request_id, source_address,
        str(event.target_id), "patron", user_agent, 1, digest, bytes(32), bytes(32),
        event.format, None,  # an event whose address and user agent are in its hashed row (format 1)
    )  # fmt: skip
    [(_, _, recomputed, stored, _, _)] = verify.links([[row]])
    assert recomputed == stored == digest
    assert verify.canonical_body(row) == event.canonical()
    # A bundle line re-serialised by someone's tool goes back to the hashed form (audit/bundle.py).
    assert ascii_sorted_json(json.loads(json.dumps(json.loads(event.canonical()), indent=2))) == event.canonical()


def test_the_fast_draft_keeps_a_structs_declared_order_and_sorts_dicts():
    class Declared(msgspec.Struct):
        b: int
        a: dict

    assert ascii_sorted_json_fast(Declared(1, {"z": 1, "y": 2})) == b'{"b":1,"a":{"y":2,"z":1}}'


# -- CSV: the formula guard -----------------------------------------------------------------------


def test_every_formula_start_is_made_text():
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert spreadsheet_safe([f"{start}cmd"]) == [f"'{start}cmd"]
    assert spreadsheet_safe(["Mozilla/5.0", "", None, -1, 2.5, True]) == ["Mozilla/5.0", "", None, -1, 2.5, True]


def test_text_enum_members_are_guarded_like_text():
    class Sign(enum.StrEnum):
        MINUS = "-1"

    assert spreadsheet_safe([Sign.MINUS]) == ["'-1"]


def previous_inline_guard(line):
    """The subject export's own copy before there was one module (privacy/subjects/export.py)."""
    return ["'" + v if v.__class__ is str and v.startswith(FORMULA_STARTS) else v for v in line]


def previous_audit_guard(value):
    """audit/search.py csv_cell, used per cell by the audit, patron, records and report exports."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


cells = st.lists(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.sampled_from(["=1+1", "+x", "-2", "@SUM(A1)", "\tx", "\rx", "'quoted", " =x"]),
    max_size=8,
)  # fmt: skip


@given(cells)
def test_every_export_writes_what_it_wrote_before(line):
    def written(row):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(row)
        return buffer.getvalue()

    assert written(spreadsheet_safe(line)) == written(previous_inline_guard(line))
    assert written(spreadsheet_safe(line)) == written([previous_audit_guard(v) for v in line])
    assert spreadsheet_safe(iter(line)) == spreadsheet_safe(line)  # rows are often generators


def test_core_imports_nothing_else_of_bookwarden():
    for module in Path(bookwarden.core.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = ["." if node.level else node.module or ""]
            else:
                continue
            ours = [n for n in imported if n == "." or n.split(".")[0] == "bookwarden"]
            outside = [n for n in ours if not n.startswith("bookwarden.core")]
            assert not outside, module.name
