"""Signing in with a password, then a second factor when the account's roles or enrolment call for one.

The order of checks, and why:

1. The source address's throttle (identity/throttle.py): before anything else, so a guesser who
   is waiting learns nothing, not even whether the institution exists. 429 with Retry-After.
2. The institution and account. An unknown one still costs a full argon2 verification
   (`passwords.dummy_verify`) and counts against the address only: the answer and its timing
   must not tell which accounts exist.
3. The account's lock and hard cap: a locked account is refused without checking the password
   (and, again, after the same dummy verification).
4. The password (argon2id; a hash made under weaker parameters is upgraded on the way).
5. The account's status: only active accounts sign in.
6. The second factor. Accounts holding administrative permissions through any role, built-in or
   custom (access/power.py: decided from permissions, never role names), and any account that
   enrolled a factor, get an "MFA pending" session that authenticates nothing but
   `complete_second_factor`. A role that requires a second factor
   without one enrolled is refused with `second-factor-enrolment-required`: there is no
   enrolment-only session, because a session that can change its own credentials after a
   password alone is exactly what the requirement exists to prevent; an administrator enrols
   the factor (and hands over the recovery codes) out of band.

Steps 2 to 5 answer every failure with the same `401 invalid-credentials` problem. The
enrolment refusal differs, but only someone who just proved the password can see it.

A sign-in opens its own transactions, unlike other services: a refused attempt must leave its
failure counted, and a service that raised inside its caller's transaction would roll the
count back. Each refusal is raised only after the transaction that counted it has committed,
and the slow argon2 check runs between transactions, holding no connection or row lock.

Audit: every attempt leaves one event, in a transaction that commits whatever the answer (the
refusals above are returned from their transaction, not raised in it): auth.sign_in.succeeded,
auth.sign_in.failed (with the reason, which the caller never sees), auth.sign_in.throttled,
auth.account.locked, auth.mfa.passed and auth.mfa.failed. An attempt on an unknown account goes
to the chain of the institution it named, when that exists, otherwise to the platform's; no
event holds the username or anything typed.

WebAuthn: a registered security key is a second factor like an authenticator app (`enrolled`
counts it), and a verified assertion (identity/enrolment/service.py) completes the second step through
`second_factor_passed`, exactly as a TOTP or recovery code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from bookwarden.access.roles.reads import account_permissions, privileged_roles
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.record import record, record_now
from bookwarden.core.errors import BookwardenError, Unauthenticated
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import decrypt_field
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import passwords, sessions, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.mfa import service as mfa
from bookwarden.identity.models import Account, AccountStatus, SecurityKey, SignInSession
from bookwarden.identity.throttle import Admission, FailedFactor
from bookwarden.tenancy.models import Tenant, TenantStatus
from bookwarden.tenancy.service import SLUG

SECOND_FACTOR_TRIES = 5  # wrong codes one pending session may send before it is ended


class InvalidCredentials(BookwardenError):
    """The one answer for every refused sign-in: unknown institution or account, wrong password, lock."""

    slug, status, title = "invalid-credentials", 401, "Sign-in refused"

    def __init__(self) -> None:
        super().__init__(
            "the institution, username or password is not right, or sign-in to this account is paused "
            "after repeated failures (its holder is emailed when that happens); check them and try again"
        )


class InvalidSecondFactor(BookwardenError):
    """The one answer for every refused second step: wrong, reused or malformed code, or a lock."""

    slug, status, title = "invalid-second-factor", 401, "Second factor refused"

    def __init__(self) -> None:
        super().__init__(
            "the code is not right or was used before: type the current code from your authenticator app, "
            f"or one of your recovery codes; after {SECOND_FACTOR_TRIES} wrong codes you must sign in again"
        )


class SecondFactorEnrolmentRequired(BookwardenError):
    slug, status, title = "second-factor-enrolment-required", 403, "Second factor required"

    def __init__(self, roles: list[str]):
        super().__init__(
            f"your role ({', '.join(roles)}) carries administrative permissions, which require a second factor, "
            "and none is enrolled on this account; "
            "ask an administrator of your institution to send you an enrolment link, and follow it"
        )


@dataclass(frozen=True)
class SignInAttempt:
    institution: str  # the tenant's slug
    username: str
    password: str
    source_address: str
    user_agent: str


@dataclass(frozen=True)
class SignedIn:
    """A new session: `session_token` goes into the cookie and nowhere else."""

    tenant_id: UUID
    account_id: UUID
    session_token: str
    second_factor_pending: bool


@dataclass(frozen=True)
class _Candidate:
    tenant_id: UUID
    account_id: UUID
    password_hash: str | None
    admission: Admission


# --- step one: the password ------------------------------------------------------------------


def sign_in(db: Database, attempt: SignInAttempt) -> SignedIn:
    """Check a password sign-in; raises TooManyAttempts, InvalidCredentials or SecondFactorEnrolmentRequired."""
    address = throttle.address_key(db.master, attempt.source_address)
    with platform_session(db) as session:
        throttled = _admit_address(session, address)
        tenant = institution(session, attempt.institution)
    named = tenant.id if tenant is not None else None  # the chain of any refusal before the account is known
    if throttled is not None:
        record_now(
            db, Action.SIGN_IN_THROTTLED, outcome=Outcome.DENIED, details={"attempt": "sign-in"}, tenant_id=named
        )
        raise throttled
    # A suspended institution answers like an unknown one: a sign-in could lead nowhere anyway.
    tenant_id = named if tenant is not None and tenant.status is TenantStatus.ACTIVE else None
    candidate = _admit(db, tenant_id, attempt.username) if tenant_id else None
    if candidate is None:
        # Same cost as a real check, and the failure stays counted against the address.
        passwords.dummy_verify(attempt.password, passwords.DEFAULT)
        if tenant_id is None:
            reason = "unknown institution" if tenant is None else "institution suspended"
            record_now(db, Action.SIGN_IN_FAILED, outcome=Outcome.DENIED, details={"reason": reason}, tenant_id=named)
        raise InvalidCredentials()
    verification = _verify(candidate.password_hash, attempt.password)
    with tenant_session(db, candidate.tenant_id) as session:
        outcome = _conclude(session, candidate, verification, address, attempt)
    if isinstance(outcome, BookwardenError):
        raise outcome
    return outcome


def _admit_address(session: Session, address: bytes) -> throttle.TooManyAttempts | None:
    # Returned, not raised: the institution is still looked up, so the refusal reaches its chain.
    try:
        throttle.admit_address(session, address)
    except throttle.TooManyAttempts as refused:
        return refused
    return None


def institution(session: Session, slug: str) -> Tenant | None:
    """The institution a slug names, whatever its status; None for a malformed or unknown slug."""
    # A malformed slug (one with a NUL byte would even fail in PostgreSQL) is unknown without asking.
    slug = slug.strip().lower()
    return session.scalar(select(Tenant).where(Tenant.slug == slug)) if SLUG.match(slug) else None


def _admit(db: Database, tenant_id: UUID, username: str) -> _Candidate | None:
    """The account, admitted to one password check; None when unknown, locked or blocked."""
    with tenant_session(db, tenant_id) as session:
        account = accounts.find_by_username(session, username)
        if account is None:
            _failed(session, None, "unknown account")
            return None
        admission = throttle.admit_account(session, account.id)
        if admission is None:
            _failed(session, account.id, "account locked")
            return None
        return _Candidate(tenant_id, account.id, account.password_hash, admission)


def _failed(session: TenantSession, account_id: UUID | None, reason: str, **details) -> None:
    # The reason is for the institution's auditors; the caller gets the one invalid-credentials answer.
    target = ("account", account_id) if account_id is not None else None
    record(session, Action.SIGN_IN_FAILED, target, outcome=Outcome.DENIED, details={"reason": reason, **details})


def as_principal(session: TenantSession, account_id: UUID) -> Principal:
    """The account as the actor of its own sign-in events (no permissions: it acts on itself only)."""
    return Principal(PrincipalKind.ACCOUNT, account_id, session.tenant_id, frozenset())


def _verify(stored_hash: str | None, password: str) -> passwords.Verification:
    # passwords.DEFAULT is read at call time, so raising the parameters applies to the next sign-in.
    if stored_hash is None:  # invited, no password set yet
        return passwords.dummy_verify(password, passwords.DEFAULT)
    return passwords.verify_password(stored_hash, password, passwords.DEFAULT)


def _conclude(
    session: TenantSession,
    candidate: _Candidate,
    verification: passwords.Verification,
    address: bytes,
    attempt: SignInAttempt,
) -> SignedIn | BookwardenError:
    account = session.get(Account, (session.tenant_id, candidate.account_id))
    if account is None:  # deleted while its password was being checked
        _failed(session, candidate.account_id, "account deleted")
        return InvalidCredentials()
    if not verification.ok or account.status is not AccountStatus.ACTIVE:
        # The failures counted at admission stay: against the address and the account.
        reason = "wrong password" if not verification.ok else f"account {account.status.value}"
        _failed(session, account.id, reason, consecutive_failures=candidate.admission.consecutive)
        throttle.failure_counted(session, account, candidate.admission, FailedFactor.PASSWORD)
        return InvalidCredentials()
    if verification.rehash:
        _upgrade_hash(session, account, candidate.password_hash, verification.rehash)
    throttle.release_address(session, address)
    required_by = _roles_requiring_second_factor(session, account)
    if required_by and not enrolled(session, account):
        # The password was right: its streak is over, whatever the refusal that follows.
        throttle.clear_account(session, account.id)
        _failed(session, account.id, "second factor required but none enrolled", roles=required_by)
        return SecondFactorEnrolmentRequired(required_by)
    pending = bool(required_by) or enrolled(session, account)
    if not pending:
        throttle.clear_account(session, account.id)
    # With a second factor to come, the failure counted at admission stays until that factor is
    # right: otherwise someone who knows the password could guess codes without ever locking.
    row, token = sessions.create_session(
        session,
        account.id,
        source_address=attempt.source_address,
        user_agent=attempt.user_agent,
        second_factor_pending=pending,
    )
    record(
        session,
        Action.SIGN_IN_SUCCEEDED,
        ("account", account.id),
        details={
            "session_id": row.id,
            "second_factor_pending": pending,
            "password_rehashed": bool(verification.rehash),
        },
        actor=as_principal(session, account.id),
    )
    return SignedIn(session.tenant_id, account.id, token, pending)


def _upgrade_hash(session: TenantSession, account: Account, old_hash: str | None, new_hash: str) -> None:
    # Conditional: a password changed while this one was being checked must not be overwritten.
    session.execute(
        update(Account)
        .where(Account.tenant_id == session.tenant_id, Account.id == account.id, Account.password_hash == old_hash)
        .values(password_hash=new_hash)
        .execution_options(synchronize_session=False)
    )


# --- the second factor -----------------------------------------------------------------------


def enrolled(session: TenantSession, account: Account) -> bool:
    """The account has a second factor it can complete a sign-in with: app, recovery codes or security key."""
    if account.totp_secret is not None or account.recovery_code_hashes:
        return True
    return bool(
        session.scalar(
            select(exists().where(SecurityKey.tenant_id == session.tenant_id, SecurityKey.account_id == account.id))
        )
    )


def _roles_requiring_second_factor(session: TenantSession, account: Account) -> list[str]:
    return privileged_roles(session, account.id)


def second_factor_needed(session: TenantSession, account: Account) -> bool:
    """Decided afresh on every request, so a role or factor added after sign-in applies at once."""
    return enrolled(session, account) or bool(_roles_requiring_second_factor(session, account))


def complete_second_factor(db: Database, token: str, code: str, source_address: str) -> SignedIn:
    """Check a TOTP or recovery code for the pending session behind `token`.

    Returns the session's new cookie value (its privileges rise, so its value changes).
    """
    found = sessions.lookup(db, token)
    if found is None:
        raise Unauthenticated("no sign-in is waiting for a second factor here; sign in with your password first")
    address = throttle.address_key(db.master, source_address)
    admit_second_factor(db, found, address)
    with tenant_session(db, found.tenant_id) as session:
        outcome = _check_second_factor(session, found, code, address)
    if isinstance(outcome, BookwardenError):
        raise outcome
    return outcome


def admit_second_factor(db: Database, found: sessions.SessionRef, address: bytes) -> None:
    """The address throttle for a second step; a refusal is recorded in the account's institution."""
    try:
        with platform_session(db) as session:
            throttle.admit_address(session, address)
    except throttle.TooManyAttempts:
        record_now(
            db,
            Action.SIGN_IN_THROTTLED,
            ("account", found.account_id),
            outcome=Outcome.DENIED,
            details={"attempt": "second factor", "session_id": found.session_id},
            tenant_id=found.tenant_id,
        )
        raise


def second_factor_failed(
    session: TenantSession, account_id: UUID, session_id: UUID, method: str, reason: str, **details
) -> None:
    record(
        session,
        Action.MFA_FAILED,
        ("account", account_id),
        outcome=Outcome.DENIED,
        details={"method": method, "reason": reason, "session_id": session_id, **details},
    )


def _check_second_factor(
    session: TenantSession, found: sessions.SessionRef, code: str, address: bytes
) -> SignedIn | BookwardenError:
    method = "code"
    row = sessions.live(session, found.session_id)
    if row is None or row.mfa_verified_at is not None:
        second_factor_failed(session, found.account_id, found.session_id, method, "no sign-in waiting")
        return Unauthenticated("no sign-in is waiting for a second factor here; sign in with your password first")
    # The row lock serialises two requests racing with the same code: only one can spend it.
    account = session.get(Account, (session.tenant_id, found.account_id), with_for_update=True, populate_existing=True)
    if account is None or account.status is not AccountStatus.ACTIVE:
        sessions.revoke(session, row.id)
        second_factor_failed(session, found.account_id, row.id, method, "account not active")
        return InvalidSecondFactor()
    admission = throttle.admit_account(session, account.id, honour_lock=False)
    if admission is None:  # the hard cap: nothing more is checked on this account
        sessions.revoke(session, row.id)
        second_factor_failed(session, account.id, row.id, method, "account blocked")
        return InvalidSecondFactor()
    spent = _spend_code(session, account, code)
    if spent is not None:
        return second_factor_passed(session, account, row, address, spent)
    ended = sessions.record_second_factor_failure(session, row, SECOND_FACTOR_TRIES)
    second_factor_failed(
        session,
        account.id,
        row.id,
        method,
        "wrong code",
        session_ended=ended,
        consecutive_failures=admission.consecutive,
    )
    throttle.failure_counted(session, account, admission, FailedFactor.SECOND_FACTOR)
    return InvalidSecondFactor()


def second_factor_passed(
    session: TenantSession, account: Account, row: SignInSession, address: bytes, method: str
) -> SignedIn:
    """The pending session `row` proved its second factor (`method`): the sign-in is complete.

    Every kind of second factor ends here. Proof of both factors ends the failure streaks the
    password check left counted, and the session gets a new value because its privileges rise.
    """
    throttle.release_address(session, address)
    throttle.clear_account(session, account.id)
    token = sessions.second_factor_verified(session, row)
    details = {"method": method, "session_id": row.id}
    if method == RECOVERY_CODE:
        details["recovery_codes_left"] = len(account.recovery_code_hashes or [])
    record(
        session, Action.MFA_PASSED, ("account", account.id), details=details, actor=as_principal(session, account.id)
    )
    return SignedIn(session.tenant_id, account.id, token, second_factor_pending=False)


TOTP, RECOVERY_CODE, SECURITY_KEY = "totp", "recovery code", "security key"


def _spend_code(session: TenantSession, account: Account, code: str) -> str | None:
    """The method, when `code` is a fresh TOTP code or an unused recovery code (then used up); else None."""
    if account.totp_secret is not None:
        step = mfa.verify_totp(_totp_secret(session, account), code, last_used_step=account.totp_last_step)
        if step is not None:
            return TOTP if _spend_totp_step(session, account, step) else None
    remaining = mfa.use_recovery_code(account.recovery_code_hashes or [], code)
    if remaining is None:
        return None
    account.recovery_code_hashes = remaining
    session.flush()
    return RECOVERY_CODE


def _totp_secret(session: TenantSession, account: Account) -> str:
    key = session.keyring.subject_key(session.tenant_id, account.id)
    return decrypt_field(key, session.tenant_id, accounts.TABLE, "totp_secret", account.id, account.totp_secret)


def _spend_totp_step(session: TenantSession, account: Account, step: int) -> bool:
    # Conditional on the step still being fresh (mfa.py's replay rule), on top of the row lock.
    result = session.execute(
        update(Account)
        .where(
            Account.tenant_id == session.tenant_id,
            Account.id == account.id,
            (Account.totp_last_step.is_(None)) | (Account.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# --- each request ----------------------------------------------------------------------------


def authenticate_session(db: Database, token: str) -> Principal:
    """The principal behind a session cookie, its permissions read afresh; raises Unauthenticated.

    An MFA-pending session authenticates nothing here: only `complete_second_factor` accepts it.
    """
    found = sessions.lookup(db, token)
    if found is None:
        # One answer for unknown, expired and signed-out sessions: nothing to learn from probing.
        raise Unauthenticated("the session is not valid (unknown, expired or signed out); sign in again")
    with tenant_session(db, found.tenant_id) as session:
        # Raising below rolls back the idle-expiry slide resolve() made: a refused request extends nothing.
        row = sessions.resolve(session, found.session_id)
        account = session.get(Account, (session.tenant_id, found.account_id))
        if row is None or account is None or account.status is not AccountStatus.ACTIVE:
            raise Unauthenticated("the session is not valid (unknown, expired or signed out); sign in again")
        if row.mfa_verified_at is None and (row.mfa_required or second_factor_needed(session, account)):
            raise Unauthenticated(
                "sign-in is not complete: send your authenticator or recovery code to POST /api/v1/auth/mfa"
            )
        permissions = account_permissions(session, account.id)
    return Principal(PrincipalKind.ACCOUNT, account.id, found.tenant_id, permissions)


def sign_out(db: Database, token: str | None) -> bool:
    """End the session behind `token`, if it is still live; False when there was nothing to end.

    Recorded either way: in the account's institution, or the platform's chain when no live session
    answers to the cookie (or none was sent).
    """
    found = sessions.lookup(db, token) if token else None
    if found is None:
        record_now(db, Action.SIGNED_OUT, outcome=Outcome.FAILED, details={"reason": "no live session"})
        return False
    with tenant_session(db, found.tenant_id) as session:
        ended = sessions.revoke(session, found.session_id)
        record(
            session,
            Action.SIGNED_OUT,
            ("session", found.session_id),
            outcome=Outcome.SUCCEEDED if ended else Outcome.FAILED,
            details={"account_id": found.account_id},
            actor=as_principal(session, found.account_id),
        )
        return ended


def sign_out_everywhere(db: Database, principal: Principal) -> int:
    """End every session of the signed-in account; API tokens are untouched."""
    with tenant_session(db, principal.tenant_id) as session:
        ended = sessions.revoke_all_for_account(session, principal.id)
        record(session, Action.SIGNED_OUT_EVERYWHERE, ("account", principal.id), details={"sessions_ended": ended})
        return ended
