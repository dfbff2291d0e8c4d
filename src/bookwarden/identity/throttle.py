"""Brute-force defence for sign-in: per-address throttling and per-account temporary lockout.

Defaults (module constants; every one is covered by tests/identity/test_signin.py):

- **Per source address: 5 failures in 15 minutes, then growing delays.** After the 5th failed
  attempt from one address, the next one is not even considered for 30 seconds; each further
  failure doubles the wait (1 min, 2 min, 4 min, ...), up to 1 hour. A refused attempt gets
  `429 too-many-attempts` with a `Retry-After` header; the server never sleeps, so waiting
  attackers hold no worker. The count starts again once the address has been quiet for 15
  minutes after its last delay. IPv6 addresses count per /64 network, the block one customer
  is usually given, or a single attacker would have 2^64 fresh addresses.
- **Per account: 10 failures in a row lock sign-in for 1 minute**, doubling with each further
  failure (2, 4, 8, ... minutes) up to 1 hour. The holder is mailed when the lock starts.
- **Per account: at most 100 consecutive failures ever reach a credential check** (NIST SP
  800-63B §5.2.2). The 100th failure blocks the account until an administrator resets its
  password (`clear_account`); the holder is mailed then too.
- A successful sign-in ends the account's failure streak; it does not reset the address count.

Why an attacker cannot lock a victim out for good:

- The account lock is short (1 minute to 1 hour) and ends by itself.
- Attempts made while the account is locked are refused *before* the password check and are
  neither counted nor allowed to extend the lock: a flood of guesses does not keep it closed.
  Only a failure that reached the password check counts, and after the first ten only one such
  failure per lock period is possible, so reaching the 100-failure block takes days of
  sustained guessing against one account, while each sign-in by the holder ends the streak.
- Per-address throttles carry the weight: they slow a guesser without touching the victim,
  whose own address has no failures. The account lock is the backstop against an attacker
  who spreads guesses over many addresses.

Counts live in PostgreSQL (a platform table: counters belong to no tenant), so every instance
sees the same ones, and each update is one atomic `INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`. An attempt is counted as a failure *before* its password is checked and the count
is taken back when it succeeds: concurrent requests can then never slip more guesses past a
limit than it allows, however many instances run them at once.

Nothing here stores a username or an address: rows are keyed by an HMAC of the account (under
the tenant's index key) or of the address (under a key derived from the master key).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.errors import BookwardenError, InvalidInput
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.fields import decrypt_field
from bookwarden.crypto.keyring import blind_index
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import TenantSession
from bookwarden.identity.models import Account
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import queue_mail
from bookwarden.tenancy.models import Tenant

log = structlog.get_logger()

ADDRESS_FREE_FAILURES = 5
ADDRESS_WINDOW = timedelta(minutes=15)
ADDRESS_FIRST_DELAY = timedelta(seconds=30)
ADDRESS_MAX_DELAY = timedelta(hours=1)
IPV6_PREFIX = 64

ACCOUNT_LOCK_AFTER = 10
ACCOUNT_FIRST_LOCK = timedelta(minutes=1)
ACCOUNT_MAX_LOCK = timedelta(hours=1)
ACCOUNT_HARD_CAP = 100  # NIST SP 800-63B §5.2.2: no more than 100 consecutive failed attempts

# Address rows quiet for this long can go: the longest delay is an hour and the window 15 minutes.
FORGET_QUIET_ADDRESSES_AFTER = timedelta(days=1)
_MAX_DOUBLINGS = 24  # beyond this every delay is at its cap anyway; keeps power() finite


class Scope(enum.StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


class TooManyAttempts(BookwardenError):
    """Refused before any check: too many recent failures from this address. Not a lockout of anyone."""

    slug, status, title = "too-many-attempts", 429, "Too many attempts"

    def __init__(self, retry_after: int):
        super().__init__(
            f"too many failed sign-in attempts from your network address; wait {retry_after} seconds "
            "before trying again (the Retry-After header says the same)"
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class Admission:
    """An attempt let through and counted in advance: the failure count including it, and the lock it set."""

    consecutive: int
    locked_until: datetime | None


# --- keys ----------------------------------------------------------------------------------


def address_bucket(source_address: str) -> str:
    """The unit an address counts in: the address itself, or its /64 network for IPv6."""
    raw = source_address.strip()
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        # Not an IP (a test client, a Unix socket): count it by its text; it is still one caller.
        return raw.lower()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def address_key(master: MasterKeys, source_address: str) -> bytes:
    """HMAC of the address bucket. Keyed, because the IPv4 space is small enough to hash entirely.

    The key is derived from the current master key: a master-key rotation starts every address
    count afresh, which costs at most one window of counting.
    """
    bucket_key = derive(master.current, KeyPurpose.ADDRESS_THROTTLE)
    return hmac.new(bucket_key, address_bucket(source_address).encode(), hashlib.sha256).digest()


def account_key(session: TenantSession, account_id: UUID) -> bytes:
    # Under the tenant's index key: after offboarding, no row can be tied to the account again.
    return blind_index(session.keyring.index_key(session.tenant_id), "auth-failures-account", str(account_id))


# --- per address ---------------------------------------------------------------------------


def _delay(count: str, free: str, first: str, cap: str) -> str:
    # first * 2^(count - free), at most cap: the SQL for the growing waits of both scopes.
    return f"least({first} * power(2, least({count} - {free}, {_MAX_DOUBLINGS})), {cap})"


# The address has been quiet for a whole window since its first failure and since its last delay.
_ADDRESS_FRESH = "(f.window_start <= now() - :window AND (f.locked_until IS NULL OR f.locked_until <= now() - :window))"
_ADDRESS_COUNT = f"(CASE WHEN {_ADDRESS_FRESH} THEN 1 ELSE f.consecutive + 1 END)"
_ADMIT_ADDRESS = text(
    f"""
    INSERT INTO auth_failures AS f (scope, key, consecutive, window_start, last_failure_at, locked_until)
    VALUES ('address', :key, 1, now(), now(), NULL)
    ON CONFLICT (scope, key) DO UPDATE SET
        consecutive = {_ADDRESS_COUNT},
        window_start = CASE WHEN {_ADDRESS_FRESH} THEN now() ELSE f.window_start END,
        last_failure_at = now(),
        locked_until = CASE WHEN {_ADDRESS_COUNT} >= :free
                            THEN now() + {_delay(_ADDRESS_COUNT, ":free", ":first", ":cap")}
                            END
    WHERE f.locked_until IS NULL OR f.locked_until <= now()
    RETURNING f.consecutive, f.locked_until
    """  # noqa: S608 - the f-string joins SQL fragments of this module; values are bound parameters
)


def admit_address(session: Session, key: bytes) -> Admission:
    """Let an attempt from this address through, counted as a failure until `release_address`.

    Raises TooManyAttempts while the address must wait; the refusal itself is not counted, so
    an address hammering during its delay does not make the delay longer.
    """
    admitted = session.execute(
        _ADMIT_ADDRESS,
        {
            "key": key,
            "window": ADDRESS_WINDOW,
            "free": ADDRESS_FREE_FAILURES,
            "first": ADDRESS_FIRST_DELAY,
            "cap": ADDRESS_MAX_DELAY,
        },
    ).first()
    if admitted is None:
        raise TooManyAttempts(_seconds_left(session, Scope.ADDRESS, key))
    return Admission(admitted.consecutive, admitted.locked_until)


def release_address(session: Session, key: bytes) -> None:
    """The attempt succeeded: take back the failure counted in advance for it.

    Only its own count is taken back, never earlier failures, and a delay earlier failures
    earned stays: otherwise an attacker holding one valid account could sign in between
    guesses to wipe the address's record.
    """
    session.execute(
        text(
            """
            UPDATE auth_failures
            SET consecutive = greatest(consecutive - 1, 0),
                locked_until = CASE WHEN consecutive - 1 >= :free THEN locked_until END
            WHERE scope = 'address' AND key = :key
            """
        ),
        {"key": key, "free": ADDRESS_FREE_FAILURES},
    )


def _seconds_left(session: Session, scope: Scope, key: bytes) -> int:
    left = session.execute(
        text("SELECT extract(epoch FROM locked_until - now()) FROM auth_failures WHERE scope = :s AND key = :k"),
        {"s": scope.value, "k": key},
    ).scalar()
    # At least one second: "Retry-After: 0" would invite an immediate retry into the same refusal.
    return max(1, math.ceil(left or 1))


# --- per account ---------------------------------------------------------------------------

_ACCOUNT_COUNT = "(f.consecutive + 1)"
_ADMIT_ACCOUNT = text(
    f"""
    INSERT INTO auth_failures AS f (scope, key, consecutive, window_start, last_failure_at, locked_until)
    VALUES ('account', :key, 1, now(), now(), CASE WHEN 1 >= :lock_after THEN now() + :first END)
    ON CONFLICT (scope, key) DO UPDATE SET
        consecutive = {_ACCOUNT_COUNT},
        last_failure_at = now(),
        locked_until = CASE WHEN {_ACCOUNT_COUNT} >= :lock_after
                            THEN greatest(f.locked_until,
                                          now() + {_delay(_ACCOUNT_COUNT, ":lock_after", ":first", ":cap")})
                            END
    WHERE f.consecutive < :hard_cap
      AND (NOT :honour_lock OR f.locked_until IS NULL OR f.locked_until <= now())
    RETURNING f.consecutive, f.locked_until
    """  # noqa: S608 - the f-string joins SQL fragments of this module; values are bound parameters
)


def admit_account(session: TenantSession, account_id: UUID, *, honour_lock: bool = True) -> Admission | None:
    """`admit_key` for a tenant account, keyed under its tenant's index key."""
    return admit_key(session, account_key(session, account_id), honour_lock=honour_lock)


def admit_key(session: Session, key: bytes, *, honour_lock: bool = True) -> Admission | None:
    """Let one credential check on the account through, counted as a failure until `clear_account`.

    None when the account is locked or has reached the hard cap: the caller must then refuse
    without checking anything (and answer exactly as for a wrong password).

    `honour_lock=False` is for the second factor of a sign-in whose password was right moments
    ago: the temporary lock stops password guessing and must not strand the holder halfway
    through, but the hard cap still applies and every wrong code still counts.
    """
    admitted = session.execute(
        _ADMIT_ACCOUNT,
        {
            "key": key,
            "lock_after": ACCOUNT_LOCK_AFTER,
            "first": ACCOUNT_FIRST_LOCK,
            "cap": ACCOUNT_MAX_LOCK,
            "hard_cap": ACCOUNT_HARD_CAP,
            "honour_lock": honour_lock,
        },
    ).first()
    if admitted is None:
        return None
    return Admission(admitted.consecutive, admitted.locked_until)


def lock_account_until(session: TenantSession, account_id: UUID, duration: timedelta) -> datetime:
    """Lock the account's sign-in for `duration` from now (or keep a longer lock it already has), as its own
    failures would: sign-in refuses it before any password check, and the lock ends by itself. For active
    response (monitor/response/jails.py), when a rule sees the account attacked. Returns when it ends."""
    return session.execute(
        text(
            """
            INSERT INTO auth_failures AS f (scope, key, consecutive, window_start, last_failure_at, locked_until)
            VALUES ('account', :key, 0, now(), now(), now() + :duration)
            ON CONFLICT (scope, key) DO UPDATE SET
                locked_until = greatest(f.locked_until, now() + :duration)
            RETURNING f.locked_until
            """
        ),
        {"key": account_key(session, account_id), "duration": duration},
    ).scalar_one()


def clear_account(session: TenantSession, account_id: UUID) -> None:
    """End the account's failure streak: after a complete sign-in, or an administrator's password reset."""
    clear_key(session, account_key(session, account_id))


def clear_key(session: Session, key: bytes) -> None:
    """End the failure streak of the account counted under `key` (operator accounts use their own keys)."""
    session.execute(text("DELETE FROM auth_failures WHERE scope = 'account' AND key = :key"), {"key": key})


def account_failures(session: TenantSession, account_id: UUID) -> int:
    """Consecutive failures on the account's record (0 when it has none)."""
    return (
        session.execute(
            text("SELECT consecutive FROM auth_failures WHERE scope = 'account' AND key = :key"),
            {"key": account_key(session, account_id)},
        ).scalar()
        or 0
    )


def blocked(admission: Admission) -> bool:
    """True when this failure was the last the account may have: an administrator must step in."""
    return admission.consecutive >= ACCOUNT_HARD_CAP


def _claim_lock_notice(session: TenantSession, account_id: UUID) -> bool:
    # One "paused" notice per failure streak, claimed atomically so that two instances counting
    # failures at the same moment do not both mail it. Later re-locks of the same streak tell the
    # holder nothing new and would let an attacker flood their mailbox.
    claimed = session.execute(
        text(
            """
            UPDATE auth_failures SET notice_sent_at = now()
            WHERE scope = 'account' AND key = :key AND consecutive >= :lock_after AND notice_sent_at IS NULL
            RETURNING consecutive
            """
        ),
        {"key": account_key(session, account_id), "lock_after": ACCOUNT_LOCK_AFTER},
    ).first()
    return claimed is not None


# --- notices -------------------------------------------------------------------------------


class FailedFactor(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 - which factor failed, not a password
    SECOND_FACTOR = "second factor"


def failure_counted(session: TenantSession, account: Account, admission: Admission, factor: FailedFactor) -> None:
    """A credential check failed (its failure was counted at admission): mail the holder when it locks.

    Each failure that locks the account (again, for longer) or blocks it is recorded as auth.account.locked.
    """
    if admission.locked_until is not None or blocked(admission):
        details = {
            "consecutive_failures": admission.consecutive,
            "locked_until": admission.locked_until.astimezone(UTC).isoformat() if admission.locked_until else None,
            "blocked": blocked(admission),
            "factor": factor.value,
        }
        record(session, Action.ACCOUNT_LOCKED, ("account", account.id), details=details)
    if blocked(admission):
        _mail_holder(session, account, "Sign-in to your account is blocked", _blocked_text(admission, factor))
    elif admission.locked_until is not None and _claim_lock_notice(session, account.id):
        _mail_holder(session, account, "Sign-in to your account is paused", _paused_text(admission, factor))


def _paused_text(admission: Admission, factor: FailedFactor) -> str:
    until = admission.locked_until.astimezone(UTC).strftime("%H:%M UTC on %d %B %Y")
    return (
        f"Sign-in to your account has failed {admission.consecutive} times in a row, so it is paused until "
        f"{until}; each further failure pauses it longer, up to an hour at a time. The pause ends by "
        "itself, and signing in successfully afterwards clears it.\n\n" + _who_text(factor)
    )


def _blocked_text(admission: Admission, factor: FailedFactor) -> str:
    return (
        f"Sign-in to your account has failed {admission.consecutive} times in a row, the most we allow, so "
        "signing in is now blocked. Ask your institution's administrator to reset your password; that "
        "unblocks it.\n\n" + _who_text(factor)
    )


def _who_text(factor: FailedFactor) -> str:
    if factor is FailedFactor.SECOND_FACTOR:
        return (
            "The last failure was a wrong second-factor code after a correct password: someone else may "
            "know your password. Change it as soon as you can sign in, and tell your security officer."
        )
    return (
        "If these attempts were not yours, someone may be guessing your password. Nothing else has "
        "changed; if your password is short or used elsewhere, change it after signing in."
    )


def _mail_holder(session: TenantSession, account: Account, subject: str, message: str) -> None:
    key = session.keyring.subject_key(session.tenant_id, account.id)

    def field(column: str) -> str | None:
        return decrypt_field(key, session.tenant_id, "accounts", column, account.id, getattr(account, column))

    address = field("email")
    if address is None:
        # The account has nowhere to be told; security contacts see the audit trail instead.
        log.warning("signin.lock_notice_unsent", reason="account has no email", account_id=str(account.id))
        return
    institution = session.get(Tenant, session.tenant_id).name
    try:
        queue_mail(
            session,
            to=address,
            subject=f"[{institution}] {subject}",
            template="generic.txt",
            context={
                "recipient_name": field("display_name") or field("username"),
                "message": message,
                "institution": institution,
            },
            category=MailCategory.SERVICE,
        )
    except InvalidInput:
        # An address stored before addresses were checked: the sign-in must still get its usual
        # answer, not a 422 that would tell the caller this account exists and is locking.
        log.warning("signin.lock_notice_unsent", reason="account email refused", account_id=str(account.id))


# --- budgets of open routes ----------------------------------------------------------------


class BudgetSpent(TooManyAttempts):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.detail = (
            f"too many requests from your network address; wait {retry_after} seconds before trying again "
            "(the Retry-After header says the same)"
        )
        self.args = (self.detail,)


@dataclass(frozen=True)
class Budget:
    """So many writes per address bucket per window, for an open route that is not a sign-in.

    Not the failure throttle: a campus behind one NAT address makes many legitimate requests,
    and five would lock it out. A budget only caps a flood: once spent, the address waits for
    the window to end (429 with Retry-After), and the next window starts afresh.
    """

    purpose: str  # a name the rate_budgets table knows (its CHECK)
    limit: int
    window: timedelta


# One choice per browser every six months; 120 in 10 minutes is a busy campus, not a person.
COOKIE_CHOICE = Budget("cookie_choice", limit=120, window=timedelta(minutes=10))
# The audit events of refusals to callers with no credential (api/problems.py): each is one row kept
# for years, so one address gets 300 in 5 minutes; past that it is answered 429 and nothing is added.
ANONYMOUS_EVENTS = Budget("anonymous_events", limit=300, window=timedelta(minutes=5))
BUDGETS = (COOKIE_CHOICE, ANONYMOUS_EVENTS)

_SPEND = text(
    """
    INSERT INTO rate_budgets AS b (purpose, key, window_start, spent) VALUES (:purpose, :key, now(), 1)
    ON CONFLICT (purpose, key) DO UPDATE SET
        window_start = CASE WHEN b.window_start <= now() - :window THEN now() ELSE b.window_start END,
        spent = CASE WHEN b.window_start <= now() - :window THEN 1 ELSE b.spent + 1 END
    WHERE b.window_start <= now() - :window OR b.spent < :limit
    RETURNING b.spent
    """
)


def spend(session: Session, budget: Budget, master: MasterKeys, source_address: str) -> None:
    """Take one from the address's budget, or raise BudgetSpent (429) until its window ends.

    One atomic upsert, so concurrent requests on any number of instances never overspend."""
    key = derive(address_key(master, source_address), KeyPurpose.ADDRESS_BUDGET, budget.purpose)
    parameters = {"purpose": budget.purpose, "key": key, "window": budget.window, "limit": budget.limit}
    if session.execute(_SPEND, parameters).first() is None:
        left = session.execute(
            text("SELECT window_start + :window - now() FROM rate_budgets WHERE purpose = :purpose AND key = :key"),
            parameters,
        ).scalar_one()
        raise BudgetSpent(max(1, math.ceil(left.total_seconds())))


def forget_spent_budgets(session: Session, budgets: tuple[Budget, ...]) -> int:
    """Delete budgets whose window ended: the next request starts a fresh one anyway."""
    return sum(
        session.execute(
            text("DELETE FROM rate_budgets WHERE purpose = :purpose AND window_start <= now() - :window"),
            {"purpose": budget.purpose, "window": budget.window},
        ).rowcount
        for budget in budgets
    )


# --- housekeeping --------------------------------------------------------------------------


def forget_quiet_addresses(session: Session, quiet: timedelta = FORGET_QUIET_ADDRESSES_AFTER) -> int:
    """Delete address counts quiet for `quiet`: they would start afresh anyway. Account counts stay:
    a streak of failures lasts until a success or an administrator ends it, however old."""
    result = session.execute(
        text(
            """
            DELETE FROM auth_failures
            WHERE scope = 'address' AND last_failure_at < now() - :quiet
              AND (locked_until IS NULL OR locked_until < now() - :quiet)
            """
        ),
        {"quiet": quiet},
    )
    return result.rowcount
