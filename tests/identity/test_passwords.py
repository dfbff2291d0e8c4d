"""Passwords: the role-based policy a person meets when choosing one, and the argon2id hashes behind login.

Hashes here use the OWASP floor (about 30 ms each) unless a test is about the default, so the file
stays quick while exercising the same code paths.
"""

from __future__ import annotations

import random
import re
import string
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, Type
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bookwarden.core.errors import InvalidInput
from bookwarden.identity import passwords
from bookwarden.identity.passwords import (
    DEFAULT,
    MIN_LENGTH_FLOORS,
    OWASP_FLOOR,
    HashParams,
    PasswordPolicy,
    PasswordRejected,
    PasswordRule,
    RoleClass,
    check_password,
    common_passwords,
    dummy_verify,
    expired,
    floor_problem,
    hash_password,
    is_common_password,
    verify_password,
)
from tests.helpers import argon2_verifications, stored_hash

FAST = OWASP_FLOOR
PHC = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
# Hypothesis examples each cost one or two argon2 runs: a few are enough to find a counterexample.
FEW = settings(max_examples=20, deadline=None)

PATRON = PasswordPolicy.for_role(RoleClass.PATRON)
STAFF = PasswordPolicy.for_role(RoleClass.STAFF)
ADMIN = PasswordPolicy.for_role(RoleClass.ADMIN)


def refusal(password: str, policy: PasswordPolicy, **context) -> PasswordRejected:
    with pytest.raises(PasswordRejected) as caught:
        check_password(password, policy, **context)
    return caught.value


def hash_parameters(stored_hash: str) -> tuple[int, int, int]:
    match = PHC.match(stored_hash)
    assert match, "not an argon2id PHC string"
    memory, time_cost, parallelism = (int(group) for group in match.groups())
    return memory, time_cost, parallelism


# ---------------------------------------------------------------------------------------------
# Policy: platform floors per role class, tenant overrides on top


@pytest.mark.parametrize(
    ("role_class", "floor", "history"),
    [(RoleClass.PATRON, 8, 0), (RoleClass.STAFF, 12, 5), (RoleClass.ADMIN, 15, 5), (RoleClass.OPERATOR, 15, 5)],
)
def test_each_role_class_starts_at_its_platform_floor(role_class, floor, history):
    policy = PasswordPolicy.for_role(role_class)
    assert (policy.min_length, policy.history, policy.expiry_days) == (floor, history, None)
    assert policy.max_length >= 64


def test_a_tenant_may_raise_the_bar():
    policy = PasswordPolicy.for_role(RoleClass.STAFF, min_length=16, max_length=256, history=10, expiry_days=365)
    assert (policy.min_length, policy.max_length, policy.history, policy.expiry_days) == (16, 256, 10, 365)


def test_a_tenant_may_not_go_below_the_floor_and_is_told_which_floor():
    with pytest.raises(InvalidInput, match=r"^min_length 10 is below the platform floor of 12 for staff$"):
        PasswordPolicy.for_role(RoleClass.STAFF, min_length=10)


@given(role_class=st.sampled_from(RoleClass), min_length=st.integers(min_value=-5, max_value=64))
def test_no_policy_ever_sits_below_its_floor(role_class, min_length):
    floor = MIN_LENGTH_FLOORS[role_class]
    try:
        policy = PasswordPolicy.for_role(role_class, min_length=min_length)
    except InvalidInput as refused:
        assert min_length < floor
        assert f"platform floor of {floor} for {role_class}" in refused.detail
    else:
        assert policy.min_length == min_length >= floor


def test_a_stored_policy_is_held_to_the_floor_too():
    # Constructed directly, as when read back from the database: the floor still applies.
    with pytest.raises(InvalidInput, match="platform floor of 15 for operator"):
        PasswordPolicy(role_class=RoleClass.OPERATOR, min_length=12)
    assert PasswordPolicy(role_class="staff", min_length=12).role_class is RoleClass.STAFF


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_length": 63}, "max_length 63 is below the platform floor of 64"),
        ({"max_length": 5000}, "above the platform ceiling of 1024"),
        ({"min_length": 80, "max_length": 64}, "min_length 80 is above max_length 64"),
        ({"history": -1}, "history -1 must be between 0 and 24"),
        ({"history": 25}, "history 25 must be between 0 and 24"),
        ({"expiry_days": 0}, "expiry_days 0 must be at least 1"),
        ({"min_length": True}, "min_length must be a whole number"),
        ({"min_length": "12"}, "min_length must be a whole number"),
        ({"require_digit": True}, "unknown password policy setting 'require_digit'"),
        ({"role_class": RoleClass.PATRON}, "unknown password policy setting 'role_class'"),
    ],
)
def test_bad_tenant_settings_are_refused_with_a_reason(overrides, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        PasswordPolicy.for_role(RoleClass.STAFF, **overrides)


def test_passwords_never_expire_unless_the_tenant_asks():
    changed = datetime(2020, 1, 1, tzinfo=UTC)
    assert not expired(changed, STAFF, changed + timedelta(days=3650))
    quarterly = PasswordPolicy.for_role(RoleClass.STAFF, expiry_days=90)
    assert not expired(changed, quarterly, changed + timedelta(days=89, hours=23))
    assert expired(changed, quarterly, changed + timedelta(days=90))


# ---------------------------------------------------------------------------------------------
# Length: Unicode code points after NFKC


def test_length_is_counted_after_nfkc_so_a_ligature_counts_as_two_letters():
    password = "ﬁrm quokka7"  # 'ﬁ' is one code point that NFKC turns into "fi"
    assert len(password) == 11
    assert len(unicodedata.normalize("NFKC", password)) == 12
    check_password(password, STAFF)


def test_combining_accents_compose_before_counting():
    password = "cafe\u0301que\u0301bec"  # 12 code points typed, 10 once each accent joins its letter
    refused = refusal(password, STAFF)
    assert refused.rule is PasswordRule.TOO_SHORT
    assert refused.detail.endswith("this one has 10")


def test_a_64_character_passphrase_is_accepted_even_at_the_smallest_allowed_maximum():
    policy = PasswordPolicy.for_role(RoleClass.ADMIN, max_length=64)
    passphrase = "the quiet reading room smells of old paper, dust and fresh coffee"[:64]
    assert len(passphrase) == 64
    check_password(passphrase, policy)


def test_the_maximum_length_is_enforced():
    refused = refusal("mauve harbour lantern " * 6, STAFF)  # 132 > 128
    assert refused.rule is PasswordRule.TOO_LONG
    assert refused.detail == "password too long: at most 128 characters; this one has 132"


# ---------------------------------------------------------------------------------------------
# Every refusal names its rule in words a person can act on, and never repeats the password

OLD_STAFF_PASSWORD = "violet tram ticket 1987"
PREVIOUS = [hash_password(OLD_STAFF_PASSWORD, FAST)]
CONTEXT = {"context_words": ["jdoe", "jane.doe@springfield.edu", "Springfield Public Library"]}


@pytest.mark.parametrize(
    ("password", "policy", "context", "rule", "says"),
    [
        ("Quokka7!", STAFF, {}, PasswordRule.TOO_SHORT, "at least 12 characters for staff accounts; this one has 8"),
        ("Quokka7!" * 20, STAFF, {}, PasswordRule.TOO_LONG, "at most 128 characters; this one has 160"),
        ("mauve\x00harbour lantern", STAFF, {}, PasswordRule.INVALID_CHARACTER, "control character"),
        ("Jane.Doe quokka lantern", STAFF, CONTEXT, PasswordRule.CONTEXT, "your name, username, email address"),
        ("P@ssw0rd!", PATRON, {}, PasswordRule.COMMON, "common and breached passwords"),
        ("qwertyuiopasdf", STAFF, {}, PasswordRule.PREDICTABLE, "easy to guess"),
        ("aaaaaaaaaaaaaaaa", STAFF, {}, PasswordRule.PREDICTABLE, "repeated characters"),
        (OLD_STAFF_PASSWORD, STAFF, {"previous_hashes": PREVIOUS}, PasswordRule.REUSED, "last 5 passwords"),
    ],
)
def test_each_refusal_names_its_rule_and_never_echoes_the_password(password, policy, context, rule, says):
    refused = refusal(password, policy, **context)
    assert refused.rule is rule
    assert says in refused.detail
    assert password.casefold() not in refused.detail.casefold()
    assert isinstance(refused, InvalidInput)
    assert refused.slug == "password-rejected"


def test_a_lone_surrogate_is_refused_not_crashed_on():
    # JSON can carry "\ud800"; it is not a character and must get a clear refusal.
    assert refusal("mauve harbour \ud800 lantern", STAFF).rule is PasswordRule.INVALID_CHARACTER


# ---------------------------------------------------------------------------------------------
# Common and breached passwords


def test_the_blocklist_is_zxcvbn_and_the_debian_dictionary_over_100000_entries():
    # zxcvbn 4.x ships six frequency lists (30,000 breached passwords, 30,000 Wikipedia words,
    # 19,160 TV and film words, 10,000 surnames, 4,695 first names), de-duplicated across lists:
    # 93,855 distinct entries; Debian's wamerican word list brings the total past 125,000.
    words = common_passwords()
    assert len(words) >= 100_000
    assert {"123456", "password", "qwerty", "iloveyou", "monkey"} <= words
    assert {"librarian", "circulation", "quixotic"} <= words  # dictionary words zxcvbn's lists lack
    assert "librarian's" not in words


def test_a_missing_dictionary_stops_rather_than_weakening_the_policy(monkeypatch, tmp_path):
    monkeypatch.setattr(passwords, "DICTIONARY_FILE", tmp_path / "absent")
    with pytest.raises(RuntimeError, match="wamerican"):
        passwords._dictionary_words()


@pytest.mark.parametrize("password", ["password", "123456", "Password1", "P@ssw0rd!", "qwerty123"])
def test_common_passwords_are_refused(password):
    assert is_common_password(password)
    # "123456" is refused for its length before the list is consulted; the others reach the list.
    refused = refusal(password, PATRON)
    assert refused.rule in {PasswordRule.COMMON, PasswordRule.TOO_SHORT}
    assert refused.rule is PasswordRule.COMMON or len(password) < PATRON.min_length


@pytest.mark.parametrize("password", ["$ecret123", "Summer2024!", "!!Dragon99", "m0nkey!!", "1qaz2wsx"])
def test_decorated_breached_passwords_are_refused(password):
    assert refusal(password, PATRON).rule is PasswordRule.COMMON


@pytest.mark.parametrize(
    "passphrase",
    [
        "correct horse battery staple",
        "my password is long enough now",  # contains a breached word, but is not a decorated one
        "library books are quiet 2024",
        "winter is coming to the fens",
    ],
)
def test_long_passphrases_are_accepted_at_the_strictest_floor(passphrase):
    check_password(passphrase, ADMIN)


def test_random_16_character_strings_are_accepted():
    alphabet = string.ascii_letters + string.digits + string.punctuation
    generator = random.Random(20240611)
    for _ in range(50):
        check_password("".join(generator.choice(alphabet) for _ in range(16)), ADMIN)


def test_no_composition_rules_lowercase_words_alone_are_fine():
    check_password("mauve harbour lantern", STAFF)


# ---------------------------------------------------------------------------------------------
# Context words: the account's own name, email and institution


@pytest.mark.parametrize(
    "password",
    [
        "jdoe-quokka-lantern",  # the username
        "JANE.DOE mauve harbour",  # the email's local part, any case
        "mauve doe-jane harbour",  # one name from it
        "my springfield lantern",  # the institution (and the email domain)
        "public lantern harbour",  # a word of the institution's name
        "jane.doe@springfield.edu",  # the whole email address
        "j4ne mauve harbour",  # look-alike letters do not hide it
    ],
)
def test_context_words_are_refused(password):
    assert refusal(password, STAFF, **CONTEXT).rule is PasswordRule.CONTEXT


def test_short_context_parts_do_not_refuse_ordinary_words():
    # "li" and "edu" are too short to mean anything inside another word.
    check_password("lilac tree by the river", STAFF, context_words=["li@x.edu"])


# ---------------------------------------------------------------------------------------------
# History


def test_a_recent_password_cannot_be_reused_and_a_new_one_can():
    assert refusal(OLD_STAFF_PASSWORD, STAFF, previous_hashes=PREVIOUS).rule is PasswordRule.REUSED
    check_password("cobalt ferry lantern 2031", STAFF, previous_hashes=PREVIOUS)


def test_reuse_is_recognised_across_unicode_forms():
    previous = [hash_password("ﬁsh tank ﬁlter north", FAST)]
    assert refusal("fish tank filter north", STAFF, previous_hashes=previous).rule is PasswordRule.REUSED


def test_only_as_many_previous_passwords_as_the_policy_remembers_are_checked():
    others = [hash_password(f"other password number {n}", FAST) for n in range(5)]
    oldest_last = [*others, PREVIOUS[0]]  # newest first: the old password is sixth
    check_password(OLD_STAFF_PASSWORD, STAFF, previous_hashes=oldest_last)
    check_password(OLD_STAFF_PASSWORD, PasswordPolicy.for_role(RoleClass.STAFF, history=0), previous_hashes=PREVIOUS)


def test_patrons_keep_no_history_by_default():
    previous = [hash_password("cobalt ferry lantern", FAST)]
    check_password("cobalt ferry lantern", PATRON, previous_hashes=previous)


# ---------------------------------------------------------------------------------------------
# Hashing and verification


def test_the_default_hash_is_argon2id_with_at_least_the_owasp_minimum():
    memory, time_cost, parallelism = hash_parameters(hash_password("cobalt ferry lantern"))
    assert (memory, time_cost, parallelism) == (DEFAULT.memory_cost, DEFAULT.time_cost, DEFAULT.parallelism)
    assert memory >= 19456 and time_cost >= 2 and parallelism >= 1


def test_production_hashes_at_rfc_9106s_second_option_never_at_the_tests_floor():
    # Test fixtures patch DEFAULT down to the floor for themselves (monkeypatch); the module's own value,
    # the one every sign-in and password change of a running platform reads, stays the strong one.
    assert HashParams(memory_cost=65536, time_cost=3, parallelism=4) == DEFAULT
    assert passwords.DEFAULT is DEFAULT


def test_the_hash_fixtures_share_is_real_and_at_the_floor_at_least():
    shared = stored_hash("cobalt ferry lantern", FAST)
    assert floor_problem(shared) is None and hash_parameters(shared) == (19456, 2, 1)
    assert verify_password(shared, "cobalt ferry lantern", FAST).ok
    assert stored_hash("cobalt ferry lantern", FAST) == shared  # one per process: salts are not what fixtures test


def test_the_floor_hash_carries_exactly_the_owasp_minimum():
    assert hash_parameters(hash_password("cobalt ferry lantern", FAST)) == (19456, 2, 1)


def test_hashes_are_salted():
    assert hash_password("cobalt ferry lantern", FAST) != hash_password("cobalt ferry lantern", FAST)


def test_the_right_password_verifies_and_a_wrong_one_does_not():
    stored = hash_password("cobalt ferry lantern", FAST)
    assert verify_password(stored, "cobalt ferry lantern", FAST).ok
    assert not verify_password(stored, "cobalt ferry lanterns", FAST).ok
    assert not verify_password(stored, "Cobalt ferry lantern", FAST).ok


def test_a_hash_made_under_weaker_parameters_is_upgraded_at_login():
    stronger = HashParams(memory_cost=19456, time_cost=3, parallelism=1)
    stored = hash_password("cobalt ferry lantern", FAST)
    result = verify_password(stored, "cobalt ferry lantern", stronger)
    assert result.ok and result.rehash is not None
    assert hash_parameters(result.rehash) == (19456, 3, 1)
    upgraded = verify_password(result.rehash, "cobalt ferry lantern", stronger)
    assert upgraded.ok and upgraded.rehash is None


def test_no_rehash_when_parameters_are_unchanged_or_lowered():
    stored = hash_password("cobalt ferry lantern", FAST)
    assert verify_password(stored, "cobalt ferry lantern", FAST).rehash is None
    stronger_hash = hash_password("cobalt ferry lantern", HashParams(memory_cost=19456, time_cost=3, parallelism=1))
    assert verify_password(stronger_hash, "cobalt ferry lantern", FAST).rehash is None


def test_a_failed_verification_never_offers_a_rehash():
    stored = hash_password("cobalt ferry lantern", FAST)
    stronger = HashParams(memory_cost=19456, time_cost=3, parallelism=1)
    assert verify_password(stored, "wrong", stronger).rehash is None


def test_a_legacy_argon2i_hash_still_verifies_and_is_upgraded_to_argon2id():
    legacy = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.I).hash("cobalt ferry lantern")
    result = verify_password(legacy, "cobalt ferry lantern", FAST)
    assert result.ok and result.rehash is not None
    assert result.rehash.startswith("$argon2id$")


@pytest.mark.parametrize(
    "stored_hash",
    [
        "",
        "cobalt ferry lantern",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$abc$def",
        "$argon2id$v=19$m=19456,t=2,p=1$ÿÿÿÿ$ÿÿÿÿ",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        # Salted afresh at each collection: a fixed id keeps parallel workers collecting the same tests.
        pytest.param(hash_password("cobalt ferry lantern", FAST)[:-5], id="truncated-argon2id"),
    ],
)
def test_a_malformed_stored_hash_is_simply_not_a_match(stored_hash):
    assert verify_password(stored_hash, "cobalt ferry lantern", FAST) == verify_password(stored_hash, "anything", FAST)
    assert not verify_password(stored_hash, "cobalt ferry lantern", FAST).ok


@given(stored_hash=st.text(max_size=120), candidate=st.text(max_size=40))
def test_verification_never_raises(stored_hash, candidate):
    assert not verify_password(stored_hash, candidate, FAST).ok


def test_a_lone_surrogate_candidate_does_not_match_or_raise():
    stored = hash_password("cobalt ferry lantern", FAST)
    assert not verify_password(stored, "cobalt \ud800 lantern", FAST).ok
    assert not dummy_verify("cobalt \ud800 lantern", FAST).ok


@pytest.mark.parametrize(
    ("params", "floor"),
    [
        (
            {"memory_cost": 19455, "time_cost": 2, "parallelism": 1},
            "memory_cost 19455 is below the OWASP floor of 19456",
        ),
        ({"memory_cost": 65536, "time_cost": 1, "parallelism": 1}, "time_cost 1 is below the OWASP floor of 2"),
        ({"memory_cost": 65536, "time_cost": 3, "parallelism": 0}, "parallelism 0 is below the OWASP floor of 1"),
    ],
)
def test_hash_parameters_below_the_owasp_floor_are_refused(params, floor):
    with pytest.raises(ValueError, match=floor):
        HashParams(**params)


@pytest.mark.parametrize("params", [FAST, DEFAULT])
def test_a_missing_account_costs_as_much_as_a_wrong_password(params, monkeypatch):
    """One argon2 verification of a hash made with the same parameters, either way (counted, not timed:
    timings on a busy machine lie)."""
    stored = hash_password("cobalt ferry lantern", params)
    work = argon2_verifications(monkeypatch)
    verify_password(stored, "wrong guess", params)
    real, work[:] = list(work), []
    dummy_verify("wrong guess", params)
    assert len(real) == 1 and work == real, (real, work)
    assert not dummy_verify("cobalt ferry lantern", params).ok


# ---------------------------------------------------------------------------------------------
# Properties


# Any script, symbol or emoji; control characters and unassigned code points are refused by
# design (test above), and would otherwise make up most of what Hypothesis generates.
TYPABLE = st.characters(exclude_categories=("Cc", "Cs", "Cn"))


@FEW
@given(password=st.text(alphabet=TYPABLE, min_size=8, max_size=40))
def test_any_accepted_password_round_trips_through_hash_and_verify(password):
    try:
        check_password(password, PATRON)
    except PasswordRejected:
        assume(False)
    assert verify_password(hash_password(password, FAST), password, FAST).ok


# Letters that have several Unicode spellings: accents (composed or not), a ligature, full-width
# and superscript forms that NFKC folds to plain ASCII.
UNICODE_VARIANTS = st.text(alphabet="aeinsuACEéñüÅﬁﬂＡＢｚ１²ℌ ", min_size=1, max_size=24)


@FEW
@given(text=UNICODE_VARIANTS)
def test_the_same_password_in_any_unicode_form_verifies_against_the_others_hash(text):
    decomposed = unicodedata.normalize("NFD", text)
    compatible = unicodedata.normalize("NFKC", text)
    assert verify_password(hash_password(decomposed, FAST), compatible, FAST).ok
    assert verify_password(hash_password(compatible, FAST), text, FAST).ok
