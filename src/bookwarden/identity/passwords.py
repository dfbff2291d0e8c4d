"""Passwords: argon2id hashing and the role-based password policy (NIST SP 800-63B).

The statement promises "a strict role based password policy that applies to both the operational
team members and the application's users", passwords stored "using a one-way encryption method
based on an industry-standard hash algorithm", and that "only the application is able to compare
the hashed and entered passwords". Here: argon2id (RFC 9106, the OWASP first choice) with
parameters that can never fall below OWASP's floor, and per-role policies whose platform floors a
tenant can raise but never lower.

Pure functions and small dataclasses: the identity service stores hashes and policies in
PostgreSQL and calls these. Nothing here logs, and no message ever contains a password.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import Argon2Error
from argon2.low_level import ARGON2_VERSION
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from bookwarden.core.errors import InvalidInput

# ---------------------------------------------------------------------------------------------
# Normalisation


def normalise(password: str) -> str:
    """NFKC, as NIST SP 800-63B asks, so a password typed on another keyboard or OS still matches.

    Stored hashes depend on this form: changing it would lock every user out.
    """
    return unicodedata.normalize("NFKC", password)


def _password_bytes(password: str) -> bytes:
    # surrogatepass: a lone surrogate can arrive in a JSON string and must not turn a login into a
    # 500. Its bytes are not valid UTF-8, so they can never equal the bytes of a real password.
    return normalise(password).encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------------------------
# Hashing

# OWASP Password Storage Cheat Sheet, argon2id minimum: 19 MiB, 2 iterations, 1 lane.
_FLOOR_MEMORY_KIB = 19456
_FLOOR_TIME_COST = 2
_FLOOR_PARALLELISM = 1
_HASH_LEN = 32
_SALT_LEN = 16


@dataclass(frozen=True)
class HashParams:
    """argon2id cost parameters; values below OWASP's minimum are refused."""

    memory_cost: int  # KiB
    time_cost: int
    parallelism: int

    def __post_init__(self) -> None:
        floors = (
            ("memory_cost", self.memory_cost, _FLOOR_MEMORY_KIB, " KiB (19 MiB)"),
            ("time_cost", self.time_cost, _FLOOR_TIME_COST, ""),
            ("parallelism", self.parallelism, _FLOOR_PARALLELISM, ""),
        )
        for name, value, floor, unit in floors:
            if value < floor:
                raise ValueError(f"argon2id {name} {value} is below the OWASP floor of {floor}{unit}")


OWASP_FLOOR = HashParams(memory_cost=_FLOOR_MEMORY_KIB, time_cost=_FLOOR_TIME_COST, parallelism=_FLOOR_PARALLELISM)

# RFC 9106's second recommended option (64 MiB, t=3, p=4), argon2-cffi's own default profile:
# about 0.16 s per hash on a 2-core machine and over three times the floor's memory. Each login in
# flight holds 64 MiB, so size workers for the logins expected at once, or pass OWASP_FLOOR on
# small machines. Hashes made with anything weaker are upgraded at the next successful login.
DEFAULT = HashParams(memory_cost=65536, time_cost=3, parallelism=4)


@functools.cache
def _hasher(params: HashParams) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=_HASH_LEN,
        salt_len=_SALT_LEN,
        type=Type.ID,
    )


def hash_password(password: str, params: HashParams = DEFAULT) -> str:
    """The PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash) of the NFKC-normalised password."""
    return _hasher(params).hash(_password_bytes(password))


@dataclass(frozen=True)
class Verification:
    """Outcome of a password check. `rehash`, when set, replaces the stored hash (same password)."""

    ok: bool
    rehash: str | None = None


def verify_password(stored_hash: str, candidate: str, params: HashParams = DEFAULT) -> Verification:
    """Compare `candidate` with `stored_hash`; never raises, a malformed hash simply does not match.

    On success with a hash made under weaker parameters than `params`, `rehash` carries a new hash
    of the same password so login upgrades it without asking the user anything.
    """
    if not _matches(stored_hash, candidate, params):
        return Verification(ok=False)
    rehash = _hasher(params).hash(_password_bytes(candidate)) if _weaker_than(stored_hash, params) else None
    return Verification(ok=True, rehash=rehash)


def _matches(stored_hash: str, candidate: str, params: HashParams) -> bool:
    # The cost parameters come from the stored hash; `params` only picks a cached hasher.
    try:
        return _hasher(params).verify(stored_hash, _password_bytes(candidate))
    except (Argon2Error, ValueError):
        # ValueError covers InvalidHashError, unsupported parameters and non-ASCII hash text.
        return False


def _weaker_than(stored_hash: str, params: HashParams) -> bool:
    # Only weaker: a hash stronger than today's setting (params lowered to save memory) is kept,
    # never downgraded. argon2-cffi's check_needs_rehash would also rewrite those.
    stored = extract_parameters(stored_hash)
    return (
        stored.type is not Type.ID
        or stored.version < ARGON2_VERSION
        or stored.memory_cost < params.memory_cost
        or stored.time_cost < params.time_cost
        or stored.parallelism < params.parallelism
        or stored.hash_len < _HASH_LEN
        or stored.salt_len < _SALT_LEN
    )


def floor_problem(stored_hash: str) -> str | None:
    """What makes a stored hash weaker than the floor (argon2id, v1.3, OWASP's minimum costs), read from the
    hash string's own parameters; None when it meets it. The live evidence checks every stored hash with it."""
    try:
        stored = extract_parameters(stored_hash)
    except (Argon2Error, ValueError):
        return "not an argon2 PHC string"
    if stored.type is not Type.ID:
        return f"{stored.type.name.lower()}, not argon2id"
    if stored.version < ARGON2_VERSION:
        return f"argon2 version {stored.version}, below {ARGON2_VERSION}"
    try:
        HashParams(stored.memory_cost, stored.time_cost, stored.parallelism)
    except ValueError as exc:
        return str(exc)
    return None


# A fixed salt and a fixed tag nobody can find a preimage for: verifying against it costs exactly
# what a real verification with the same parameters costs, and always fails.
_DUMMY_SALT = b"bookwarden/dummy"
_DUMMY_TAG = hashlib.sha256(b"bookwarden: no account has this password").digest()


def _phc_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


@functools.cache
def _dummy_hash(params: HashParams) -> str:
    return (
        f"$argon2id$v={ARGON2_VERSION}$m={params.memory_cost},t={params.time_cost},p={params.parallelism}"
        f"${_phc_b64(_DUMMY_SALT)}${_phc_b64(_DUMMY_TAG)}"
    )


def dummy_verify(candidate: str, params: HashParams = DEFAULT) -> Verification:
    """Spend the time of a real verification and fail: the answer for an account that does not exist.

    Without it, "no such account" returns in microseconds and "wrong password" in a fraction of a
    second, and the difference tells an attacker which accounts exist.
    """
    _matches(_dummy_hash(params), candidate, params)
    return Verification(ok=False)


# ---------------------------------------------------------------------------------------------
# Policy


class RoleClass(enum.StrEnum):
    PATRON = "patron"
    STAFF = "staff"
    ADMIN = "admin"  # accounts holding administrative permissions through any role (access/power.py)
    OPERATOR = "operator"  # platform staff


# The platform floors: a tenant may ask for longer passwords, never for shorter ones. Privileged
# accounts get longer minimums because their compromise exposes other people's data.
MIN_LENGTH_FLOORS: dict[RoleClass, int] = {
    RoleClass.PATRON: 8,
    RoleClass.STAFF: 12,
    RoleClass.ADMIN: 15,
    RoleClass.OPERATOR: 15,
}
MAX_LENGTH_FLOOR = 64  # NIST SP 800-63B: allow at least 64 characters, so passphrases fit.
MAX_LENGTH_CEILING = 1024  # bounds the work the checks below do; nobody types more.
HISTORY_CEILING = 24  # each remembered hash costs one argon2 verification per password change.
DEFAULT_MAX_LENGTH = 128
DEFAULT_HISTORY: dict[RoleClass, int] = {
    RoleClass.PATRON: 0,
    RoleClass.STAFF: 5,
    RoleClass.ADMIN: 5,
    RoleClass.OPERATOR: 5,
}
_ACCOUNT_KIND = {
    RoleClass.PATRON: "patron accounts",
    RoleClass.STAFF: "staff accounts",
    RoleClass.ADMIN: "administrator accounts",
    RoleClass.OPERATOR: "platform operator accounts",
}


@dataclass(frozen=True)
class PasswordPolicy:
    """What a password must satisfy for one role class. Every construction checks the floors, so a
    policy read back from the database is held to them as much as one a tenant just submitted."""

    role_class: RoleClass
    min_length: int
    max_length: int = DEFAULT_MAX_LENGTH
    history: int = 0  # previous passwords (newest first, the current one included) refused on change
    expiry_days: int | None = None  # NIST advises against expiry; only when the tenant asks for it

    def __post_init__(self) -> None:
        # A policy read back from the database names its role class as a plain string.
        object.__setattr__(self, "role_class", RoleClass(self.role_class))
        for name in ("min_length", "max_length", "history"):
            _require_whole_number(name, getattr(self, name))
        floor = MIN_LENGTH_FLOORS[self.role_class]
        if self.min_length < floor:
            raise InvalidInput(
                f"min_length {self.min_length} is below the platform floor of {floor} for {self.role_class}"
            )
        if self.max_length < MAX_LENGTH_FLOOR:
            raise InvalidInput(
                f"max_length {self.max_length} is below the platform floor of {MAX_LENGTH_FLOOR}: "
                "passphrases must fit (NIST SP 800-63B)"
            )
        if self.max_length > MAX_LENGTH_CEILING:
            raise InvalidInput(f"max_length {self.max_length} is above the platform ceiling of {MAX_LENGTH_CEILING}")
        if self.min_length > self.max_length:
            raise InvalidInput(f"min_length {self.min_length} is above max_length {self.max_length}")
        if not 0 <= self.history <= HISTORY_CEILING:
            raise InvalidInput(f"history {self.history} must be between 0 and {HISTORY_CEILING}")
        if self.expiry_days is not None:
            _require_whole_number("expiry_days", self.expiry_days)
            if self.expiry_days < 1:
                raise InvalidInput(f"expiry_days {self.expiry_days} must be at least 1, or unset to never expire")

    @classmethod
    def for_role(cls, role_class: RoleClass, /, **tenant_overrides: Any) -> PasswordPolicy:
        """The platform default for `role_class`, with the tenant's settings applied on top."""
        base = cls(
            role_class=role_class,
            min_length=MIN_LENGTH_FLOORS[role_class],
            history=DEFAULT_HISTORY[role_class],
        )
        settable = sorted(f.name for f in fields(cls) if f.name != "role_class")
        unknown = sorted(set(tenant_overrides) - set(settable))
        if unknown:
            raise InvalidInput(f"unknown password policy setting {unknown[0]!r}; settable: {', '.join(settable)}")
        return replace(base, **tenant_overrides)


def _require_whole_number(name: str, value: object) -> None:
    # bool is an int in Python; a tenant sending `true` for a length is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number")


def expired(changed_at: datetime, policy: PasswordPolicy, now: datetime) -> bool:
    """True when the tenant set an expiry and the password is at least that old."""
    if policy.expiry_days is None:
        return False
    return now >= changed_at + timedelta(days=policy.expiry_days)


# ---------------------------------------------------------------------------------------------
# Checking a new password


class PasswordRule(enum.StrEnum):
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    INVALID_CHARACTER = "invalid_character"
    CONTEXT = "context"
    COMMON = "common"
    PREDICTABLE = "predictable"
    REUSED = "reused"


class PasswordRejected(InvalidInput):
    """A new password broke `rule`; the message says which rule and how to fix it, never the password."""

    slug, title = "password-rejected", "Password refused"

    def __init__(self, rule: PasswordRule, detail: str):
        super().__init__(detail)
        self.rule = rule


def check_password(
    password: str,
    policy: PasswordPolicy,
    *,
    context_words: Iterable[str] = (),
    previous_hashes: Iterable[str] = (),
) -> None:
    """Refuse `password` with PasswordRejected unless it meets `policy`; return None when it does.

    `context_words`: the username, email address, names and institution name of the account.
    `previous_hashes`: the account's stored hashes, newest first; only `policy.history` are used.
    Cheap checks run first; the history check (one argon2 verification per hash) runs last.
    """
    normal = normalise(password)
    length = len(normal)
    if length > policy.max_length:
        raise PasswordRejected(
            PasswordRule.TOO_LONG, f"password too long: at most {policy.max_length} characters; this one has {length}"
        )
    _check_characters(normal)
    if length < policy.min_length:
        raise PasswordRejected(
            PasswordRule.TOO_SHORT,
            f"password too short: at least {policy.min_length} characters for "
            f"{_ACCOUNT_KIND[policy.role_class]}; this one has {length}",
        )
    if _contains_context(normal, context_words):
        raise PasswordRejected(
            PasswordRule.CONTEXT,
            "password contains your name, username, email address or the institution's name; "
            "choose words unrelated to you and to this service",
        )
    if is_common_password(normal):
        raise PasswordRejected(
            PasswordRule.COMMON,
            "password is on the list of common and breached passwords (or is one of them with digits, "
            "symbols or look-alike letters added); attackers try these first, choose another",
        )
    _check_predictability(normal)
    if _reused(normal, previous_hashes, policy.history):
        raise PasswordRejected(
            PasswordRule.REUSED,
            f"password was used recently on this account: the last {policy.history} passwords cannot be "
            "used again; choose a new one",
        )


# Control characters cannot be typed reliably, surrogates are not characters, and unassigned code
# points may gain a different NFKC form in a later Unicode version, breaking stored hashes.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Cn"})


def _check_characters(normal: str) -> None:
    for position, char in enumerate(normal, start=1):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise PasswordRejected(
                PasswordRule.INVALID_CHARACTER,
                f"password contains a control character or an unassigned code point at position {position}; "
                "remove it (letters in any script, digits, symbols, spaces and emoji are all fine)",
            )


# --- context -----------------------------------------------------------------------------------

_CONTEXT_MIN_PART = 4  # shorter parts ("li", "edu") turn up inside ordinary words
_WORD_SPLIT = re.compile(r"[\W_]+")


def _contains_context(normal: str, context_words: Iterable[str]) -> bool:
    folded_forms = _folded_forms(normal)
    for word in context_words:
        folded_word = normalise(word).casefold().strip()
        if not folded_word:
            continue
        if folded_word in folded_forms:
            return True
        if any(part in form for part in _context_parts(folded_word) for form in folded_forms):
            return True
    return False


def _context_parts(folded_word: str) -> set[str]:
    # The whole word, the local part of an email address, and each name in it ("alice.smith" ->
    # "alice", "smith"; "Springfield Public Library" -> "springfield", "public", "library").
    parts = {folded_word, folded_word.split("@", 1)[0], *_WORD_SPLIT.split(folded_word)}
    return {part for part in parts if len(part) >= _CONTEXT_MIN_PART}


# --- common and breached passwords -------------------------------------------------------------

# zxcvbn's lists: "passwords" is drawn from real breach corpora; the others are the dictionary
# words and names NIST SP 800-63B also asks verifiers to refuse.
_DICTIONARY_LISTS = ("passwords", "english_wikipedia", "surnames", "female_names", "male_names", "us_tv_and_film")
_DECORATED_BASE_MIN = 4

# Look-alike substitutions people use to "strengthen" a word; "1" stands for both i and l.
_UNLEET_TABLES = tuple(
    str.maketrans({"0": "o", "1": one, "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
    for one in ("i", "l")
)
_LEADING_DECORATION = re.compile(r"^[\W\d_]+")
_TRAILING_DECORATION = re.compile(r"[\W\d_]+$")


# Debian's American English word list (package wamerican, installed by `make install`): zxcvbn's
# lists hold 93,855 distinct entries; with these dictionary words the refusal list passes 125,000.
DICTIONARY_FILE = Path("/usr/share/dict/american-english")


@functools.cache
def common_passwords() -> frozenset[str]:
    """Every entry of the lists above and of the dictionary file, case-folded: loaded once, on first use."""
    return frozenset(word.casefold() for name in _DICTIONARY_LISTS for word in FREQUENCY_LISTS[name]) | (
        _dictionary_words()
    )


def _dictionary_words() -> frozenset[str]:
    try:
        lines = DICTIONARY_FILE.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        # Refusing fewer passwords than the policy promises would be silent weakening: stop instead.
        raise RuntimeError(
            f"{DICTIONARY_FILE} is missing: install Debian's wamerican package (make install does)"
        ) from None
    # Possessives ("library's") are the same word again.
    return frozenset(w.casefold() for w in (line.strip() for line in lines) if w and not w.endswith("'s"))


@functools.cache
def _breached_passwords() -> frozenset[str]:
    return frozenset(word.casefold() for word in FREQUENCY_LISTS["passwords"])


def is_common_password(password: str) -> bool:
    """True for a listed password or word (any case), and for a breached password decorated with
    leading/trailing digits or symbols or look-alike substitutions ("P@ssw0rd!", "Summer2024")."""
    folded = normalise(password).casefold()
    if folded in common_passwords():
        return True
    # Decorated forms count only when the base is itself a breached password of 4+ characters:
    # otherwise a long passphrase that merely ends in a dictionary word would be refused.
    breached = _breached_passwords()
    return any(base in breached for base in _undecorated(folded) if len(base) >= _DECORATED_BASE_MIN)


def _undecorated(folded: str) -> set[str]:
    # Each edge is either kept or stripped: "$ecret123" needs its leading "$" kept (it stands for
    # an s) and its trailing digits stripped; "!!dragon99" needs both edges stripped.
    leading_kept = (folded, _LEADING_DECORATION.sub("", folded))
    cores = {_TRAILING_DECORATION.sub("", core) for core in leading_kept} | set(leading_kept)
    return cores | {core.translate(table) for core in cores for table in _UNLEET_TABLES}


def _folded_forms(normal: str) -> set[str]:
    folded = normal.casefold()
    return {folded, *(folded.translate(table) for table in _UNLEET_TABLES)}


# --- predictability (zxcvbn) -------------------------------------------------------------------

# zxcvbn score 2 means at least 10^6 guesses even for an attacker who knows the patterns people
# use (keyboard walks, repeats, sequences, dates, words): NIST's "repetitive or sequential
# characters" check, made robust. Length and the lists above do the rest, so the bar is not
# higher: "correct horse battery staple" scores 4, random 16-character strings score 4.
_PREDICTABLE_BELOW_SCORE = 2
_ZXCVBN_MAX_LENGTH = 72  # zxcvbn refuses longer input: its matching is quadratic in length
_PATTERN_WORDS = {
    "dictionary": "common passwords, words or names",
    "spatial": "a keyboard pattern such as qwerty",
    "repeat": "repeated characters or groups",
    "sequence": "a sequence such as abcd or 1234",
    "regex": "a recent year",
    "date": "a date",
    "bruteforce": "too few characters",
}


def _check_predictability(normal: str) -> None:
    # Context words are not passed to zxcvbn: it stores them in a module-global dictionary, which
    # threads serving other requests would share. The context rule above covers them instead.
    result = max((zxcvbn(window) for window in _zxcvbn_windows(normal)), key=lambda r: r["score"])
    if result["score"] >= _PREDICTABLE_BELOW_SCORE:
        return
    dominant = max(result["sequence"], key=lambda match: len(match["token"]))
    pattern = _PATTERN_WORDS.get(dominant["pattern"], "a pattern attackers try early")
    raise PasswordRejected(
        PasswordRule.PREDICTABLE,
        f"password is easy to guess: it is mostly {pattern}; add a few uncommon words or random characters",
    )


def _zxcvbn_windows(normal: str) -> Iterator[str]:
    # A longer password is judged by the better of its first and last 72 characters: the whole is
    # at least as strong as either part.
    if len(normal) <= _ZXCVBN_MAX_LENGTH:
        yield normal
        return
    yield normal[:_ZXCVBN_MAX_LENGTH]
    yield normal[-_ZXCVBN_MAX_LENGTH:]


# --- history -----------------------------------------------------------------------------------


def _reused(normal: str, previous_hashes: Iterable[str], history: int) -> bool:
    # _matches, not verify_password: an old hash needs no upgrade, and computing one costs a hash.
    return any(_matches(stored, normal, DEFAULT) for stored in itertools.islice(previous_hashes, history))
