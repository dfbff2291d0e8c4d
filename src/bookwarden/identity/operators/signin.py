"""Operators signing in: a password, then always a second factor, into a server-side platform session.

The same defences as an institution's sign-in (identity/signin/service.py), in the same order:

1. the source address's throttle (identity/throttle.py), before anything else: 429 with Retry-After;
2. the account, and its own throttle (10 failures lock it, growing, 100 block it), counted in
   PostgreSQL before the password is checked; an unknown account costs a full argon2 check and
   counts against the address only, so answer and timing do not tell which accounts exist;
3. the password (argon2id; an old hash is upgraded on the way), between transactions;
4. the status: only active (enrolled) accounts sign in;
5. the second factor, always: every operator session starts pending and authenticates nothing
   until a TOTP or recovery code is accepted (`complete_second_factor`), which gives it a new value.

Steps 2 to 4 answer every refusal with the one `401 invalid-credentials`. The account's failure
streak stays counted until the second factor passes, so knowing the password does not allow
unlimited code guesses; a pending session ends after SECOND_FACTOR_TRIES wrong codes.

Sessions live in `operator_sessions` (a platform table: no tenant, out of every tenant
transaction's reach), hold only the SHA-256 of the cookie, and end at the first of IDLE_TIMEOUT
without a request, ABSOLUTE_TIMEOUT after sign-in, sign-out, or the account being disabled. They
are shorter than an institution's: an operator can ask for access to any institution.

A signed-in operator is the same `Principal` an operator token gives (no tenant, the platform
permissions of the account's role), of kind `operator`; it reaches an institution only through an
approved grant named in X-Operator-Grant (api/deps.py), exactly like a token.

Audit: every attempt, success or refusal, leaves its event on the platform chain (the username is
never recorded, only the account id once known). Lockouts are recorded as auth.account.locked; the
holder is not mailed (the platform has no mail of its own: see identity/operators/service.py).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.record import record
from bookwarden.core.errors import BookwardenError, Unauthenticated
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import Database, platform_session
from bookwarden.identity import passwords, sessions, throttle
from bookwarden.identity.mfa import service as mfa
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.identity.operators.models import OperatorAccount, OperatorSession, OperatorStatus
from bookwarden.identity.operators.service import USERNAME, failure_key, normal_username
from bookwarden.identity.signin.service import SECOND_FACTOR_TRIES, InvalidSecondFactor  # one answer, one limit
from bookwarden.identity.throttle import Admission, TooManyAttempts

COOKIE_NAME = "bw_operator_session"
IDLE_TIMEOUT = timedelta(minutes=15)
ABSOLUTE_TIMEOUT = timedelta(hours=8)
SECOND_FACTOR_TIMEOUT = sessions.SECOND_FACTOR_TIMEOUT
SLIDE_EVERY = sessions.SLIDE_EVERY
TOTP, RECOVERY_CODE = "totp", "recovery code"


class InvalidCredentials(BookwardenError):
    slug, status, title = "invalid-credentials", 401, "Sign-in refused"

    def __init__(self) -> None:
        super().__init__(
            "the username or password is not right, or sign-in to this account is paused after repeated "
            "failures; check them and try again later"
        )


def _not_signed_in() -> Unauthenticated:
    return Unauthenticated("the operator session is not valid (unknown, expired or signed out); sign in again")


def _no_pending() -> Unauthenticated:
    return Unauthenticated("no operator sign-in is waiting for a second factor here; sign in with your password first")


@dataclass(frozen=True)
class OperatorSignedIn:
    account_id: UUID
    session_token: str  # goes into the cookie and nowhere else
    second_factor_pending: bool


@dataclass(frozen=True)
class _Candidate:
    account_id: UUID
    password_hash: str | None
    admission: Admission


def _actor(account_id: UUID) -> Principal:
    # The account as the actor of its own sign-in events: no permissions, it acts on itself only.
    return Principal(PrincipalKind.OPERATOR, account_id, None, frozenset())


def _target(account_id: UUID | None) -> tuple[str, UUID | None] | None:
    return ("operator_account", account_id) if account_id is not None else None


def _failed(session: Session, account_id: UUID | None, reason: str, **details) -> None:
    details = {"reason": reason, "operator": True, **details}
    record(session, Action.SIGN_IN_FAILED, _target(account_id), outcome=Outcome.DENIED, details=details)


# --- the password ----------------------------------------------------------------------------


def sign_in(db: Database, username: str, password: str, source_address: str, user_agent: str) -> OperatorSignedIn:
    """Check the password; raises TooManyAttempts or InvalidCredentials. The session that starts is pending."""
    address = throttle.address_key(db.master, source_address)
    refused: TooManyAttempts | None = None
    with platform_session(db) as session:
        try:
            throttle.admit_address(session, address)
        except TooManyAttempts as throttled:
            refused = throttled
            details = {"attempt": "operator sign-in"}
            record(session, Action.SIGN_IN_THROTTLED, outcome=Outcome.DENIED, details=details)
        candidate = None if refused else _admit(session, db, username)
    if refused is not None:
        raise refused
    if candidate is None or candidate.password_hash is None:
        # Same cost as a real check; the failure stays counted against the address (and the account).
        passwords.dummy_verify(password, passwords.DEFAULT)
        if candidate is not None:
            with platform_session(db) as session:
                _refuse(session, db, candidate, "not enrolled")
        raise InvalidCredentials()
    verification = passwords.verify_password(candidate.password_hash, password, passwords.DEFAULT)
    with platform_session(db) as session:
        outcome = _conclude(session, db, candidate, verification, address, source_address, user_agent)
    if isinstance(outcome, BookwardenError):
        raise outcome
    return outcome


def _admit(session: Session, db: Database, username: str) -> _Candidate | None:
    name = normal_username(username)
    account = (
        session.scalar(select(OperatorAccount).where(OperatorAccount.username == name))
        if USERNAME.match(name)
        else None
    )
    if account is None:
        _failed(session, None, "unknown operator account")
        return None
    admission = throttle.admit_key(session, failure_key(db.keyring, account.id))
    if admission is None:
        _failed(session, account.id, "account locked")
        return None
    return _Candidate(account.id, account.password_hash, admission)


def _refuse(session: Session, db: Database, candidate: _Candidate, reason: str) -> None:
    _failed(session, candidate.account_id, reason, consecutive_failures=candidate.admission.consecutive)
    _locked(session, candidate.account_id, candidate.admission, "password")


def _locked(session: Session, account_id: UUID, admission: Admission, factor: str) -> None:
    """This failure locked the account (again, for longer) or blocked it: recorded; nobody can be mailed."""
    if admission.locked_until is None and not throttle.blocked(admission):
        return
    details = {
        "consecutive_failures": admission.consecutive,
        "locked_until": admission.locked_until.astimezone(UTC).isoformat() if admission.locked_until else None,
        "blocked": throttle.blocked(admission),
        "factor": factor,
    }
    record(session, Action.ACCOUNT_LOCKED, _target(account_id), details=details)


def _conclude(
    session: Session,
    db: Database,
    candidate: _Candidate,
    verification: passwords.Verification,
    address: bytes,
    source_address: str,
    user_agent: str,
) -> OperatorSignedIn | BookwardenError:
    account = session.get(OperatorAccount, candidate.account_id, populate_existing=True)
    if not verification.ok or account is None or account.status != OperatorStatus.ACTIVE:
        reason = "wrong password" if not verification.ok else f"account {account.status if account else 'gone'}"
        _refuse(session, db, candidate, reason)
        return InvalidCredentials()
    if verification.rehash:
        # Conditional: a password changed while this one was being checked must not be overwritten.
        session.execute(
            update(OperatorAccount)
            .where(OperatorAccount.id == account.id, OperatorAccount.password_hash == candidate.password_hash)
            .values(password_hash=verification.rehash)
            .execution_options(synchronize_session=False)
        )
    throttle.release_address(session, address)
    # The account's failure counted at admission stays until the second factor is right.
    token = secrets.token_urlsafe(32)
    row = OperatorSession(
        id=uuid.uuid4(),
        token_hash=sessions.token_hash(token),
        account_id=account.id,
        idle_expires_at=func.now() + SECOND_FACTOR_TIMEOUT,
        absolute_expires_at=func.now() + ABSOLUTE_TIMEOUT,
        mfa_failures=0,
        source_address=source_address,
        user_agent="".join(ch for ch in user_agent if ch.isprintable())[: sessions.USER_AGENT_MAX],
    )
    session.add(row)
    session.flush()
    details = {"session_id": row.id, "second_factor_pending": True, "password_rehashed": bool(verification.rehash)}
    record(session, Action.SIGN_IN_SUCCEEDED, _target(account.id), details=details, actor=_actor(account.id))
    return OperatorSignedIn(account.id, token, second_factor_pending=True)


# --- the second factor -----------------------------------------------------------------------


def _live(session: Session, token: str, *, lock: bool = False) -> OperatorSession | None:
    query = select(OperatorSession).where(
        OperatorSession.token_hash == sessions.token_hash(token),
        OperatorSession.revoked_at.is_(None),
        OperatorSession.idle_expires_at > func.now(),
        OperatorSession.absolute_expires_at > func.now(),
    )
    return session.scalar((query.with_for_update() if lock else query).execution_options(populate_existing=True))


def complete_second_factor(db: Database, token: str, code: str, source_address: str) -> OperatorSignedIn:
    """Check a TOTP or recovery code for the pending session behind `token`; its cookie gets a new value."""
    address = throttle.address_key(db.master, source_address)
    refused: TooManyAttempts | None = None
    with platform_session(db) as session:
        row = _live(session, token)
        if row is None or row.mfa_verified_at is not None:
            refused_early = _no_pending()
        else:
            refused_early = None
            try:
                throttle.admit_address(session, address)
            except TooManyAttempts as throttled:
                refused = throttled
                details = {"attempt": "operator second factor", "session_id": row.id}
                target = _target(row.account_id)
                record(session, Action.SIGN_IN_THROTTLED, target, outcome=Outcome.DENIED, details=details)
    if refused_early is not None:
        raise refused_early
    if refused is not None:
        raise refused
    with platform_session(db) as session:
        outcome = _check_second_factor(session, db, token, code, address)
    if isinstance(outcome, BookwardenError):
        raise outcome
    return outcome


def _check_second_factor(
    session: Session, db: Database, token: str, code: str, address: bytes
) -> OperatorSignedIn | BookwardenError:
    row = _live(session, token, lock=True)
    if row is None or row.mfa_verified_at is not None:
        return _no_pending()
    # The row lock serialises two requests racing with the same code: only one can spend it.
    account = session.get(OperatorAccount, row.account_id, with_for_update=True, populate_existing=True)
    details = {"method": "code", "session_id": row.id}
    if account is None or account.status != OperatorStatus.ACTIVE:
        row.revoked_at = func.now()
        record(
            session,
            Action.MFA_FAILED,
            _target(row.account_id),
            outcome=Outcome.DENIED,
            details={**details, "reason": "account not active"},
        )
        return InvalidSecondFactor()
    key = failure_key(db.keyring, account.id)
    admission = throttle.admit_key(session, key, honour_lock=False)
    if admission is None:  # the hard cap: nothing more is checked on this account
        row.revoked_at = func.now()
        record(
            session,
            Action.MFA_FAILED,
            _target(account.id),
            outcome=Outcome.DENIED,
            details={**details, "reason": "account blocked"},
        )
        return InvalidSecondFactor()
    method = _spend_code(session, db, account, code)
    if method is None:
        row.mfa_failures = row.mfa_failures + 1
        ended = row.mfa_failures >= SECOND_FACTOR_TRIES
        if ended:
            row.revoked_at = func.now()
        session.flush()
        failure = {
            **details,
            "reason": "wrong code",
            "session_ended": ended,
            "consecutive_failures": admission.consecutive,
        }
        record(session, Action.MFA_FAILED, _target(account.id), outcome=Outcome.DENIED, details=failure)
        _locked(session, account.id, admission, "second factor")
        return InvalidSecondFactor()
    throttle.release_address(session, address)
    throttle.clear_key(session, key)
    new_token = secrets.token_urlsafe(32)  # privileges rise: the value seen before is worth nothing now
    row.token_hash = sessions.token_hash(new_token)
    row.mfa_verified_at = func.now()
    row.mfa_failures = 0
    row.last_seen_at = func.now()
    row.idle_expires_at = func.least(func.now() + IDLE_TIMEOUT, OperatorSession.absolute_expires_at)
    session.flush()
    passed = {"method": method, "session_id": row.id}
    if method == RECOVERY_CODE:
        passed["recovery_codes_left"] = len(account.recovery_code_hashes or [])
    record(session, Action.MFA_PASSED, _target(account.id), details=passed, actor=_actor(account.id))
    return OperatorSignedIn(account.id, new_token, second_factor_pending=False)


def _spend_code(session: Session, db: Database, account: OperatorAccount, code: str) -> str | None:
    if account.totp_secret is not None:
        secret = operator_accounts.unseal(db.keyring, account.id, "totp_secret", account.totp_secret)
        step = mfa.verify_totp(secret, code, last_used_step=account.totp_last_step)
        if step is not None:
            # Conditional on the step still being fresh (mfa.py's replay rule), on top of the row lock.
            spent = session.execute(
                update(OperatorAccount)
                .where(
                    OperatorAccount.id == account.id,
                    (OperatorAccount.totp_last_step.is_(None)) | (OperatorAccount.totp_last_step < step),
                )
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            )
            return TOTP if spent.rowcount == 1 else None
    remaining = mfa.use_recovery_code(account.recovery_code_hashes or [], code)
    if remaining is None:
        return None
    account.recovery_code_hashes = remaining
    session.flush()
    return RECOVERY_CODE


# --- each request ----------------------------------------------------------------------------


def authenticate_session(db: Database, token: str) -> Principal:
    """The operator behind a session cookie, as a platform principal; raises Unauthenticated.

    A pending session (second factor not yet passed) authenticates nothing. The role is read afresh
    on every request, and a disabled account ends its sessions at once.
    """
    with platform_session(db) as session:
        row = _live(session, token)
        if row is None or row.mfa_verified_at is None:
            raise _not_signed_in()
        account = session.get(OperatorAccount, row.account_id)
        if account is None or account.status != OperatorStatus.ACTIVE:
            raise _not_signed_in()
        session.execute(
            update(OperatorSession)
            .where(OperatorSession.id == row.id, OperatorSession.last_seen_at < func.now() - SLIDE_EVERY)
            .values(
                last_seen_at=func.now(),
                idle_expires_at=func.least(func.now() + IDLE_TIMEOUT, OperatorSession.absolute_expires_at),
            )
            .execution_options(synchronize_session=False)
        )
        return Principal(PrincipalKind.OPERATOR, account.id, None, operator_accounts.permissions_of(account))


def sign_out(db: Database, token: str | None) -> bool:
    """End the session behind `token`; recorded either way on the platform chain."""
    with platform_session(db) as session:
        row = _live(session, token, lock=True) if token else None
        if row is None:
            record(session, Action.SIGNED_OUT, outcome=Outcome.FAILED, details={"reason": "no live operator session"})
            return False
        row.revoked_at = func.now()
        details = {"operator_account_id": row.account_id}
        record(session, Action.SIGNED_OUT, ("operator_session", row.id), details=details, actor=_actor(row.account_id))
        return True


@dataclass(frozen=True)
class Me:
    id: UUID
    username: str
    role: str
    permissions: list[str]


def who(db: Database, principal: Principal) -> Me:
    """The signed-in operator's account: recorded."""
    with platform_session(db) as session:
        account = session.get(OperatorAccount, principal.id)
        if account is None:
            raise _not_signed_in()
        record(session, Action.SESSION_VIEWED, ("operator_account", account.id))
        return Me(account.id, account.username, account.role, sorted(principal.permissions))
