"""Server-side sign-in sessions, stored in PostgreSQL so every instance sees the same ones.

The browser holds a cookie with 256 random bits; the table holds only its SHA-256 (a stolen
table signs nobody in). A session ends at the first of:

- IDLE_TIMEOUT (30 minutes) without a request; each request slides this expiry forward,
- ABSOLUTE_TIMEOUT (12 hours) after sign-in, however active it is,
- sign-out, "sign out everywhere", or the account's privileges changing.

Every sign-in creates a new session with a new random value. When privileges rise, a value an
attacker planted or saw before must be worth nothing after (session fixation): completing the
second factor gives the session a new value (`rotate`), and a role granted by someone else
ends the account's sessions (`privileges_changed`), so its next sign-in starts a new one.

A session whose account must still pass its second factor is "MFA pending": it authenticates
nothing but the second step, and lives only SECOND_FACTOR_TIMEOUT (5 minutes) in that state.
Whether a session is pending is decided by the caller (identity/signin/service.py) on each request,
from `mfa_verified_at` here and the account's roles and enrolment there.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import (
    func,
    select,
    text,
    update,
)

from bookwarden.db.session import Database, TenantSession, platform_session
from bookwarden.identity.models import Account, SignInSession

COOKIE_NAME = "bw_session"
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
SECOND_FACTOR_TIMEOUT = timedelta(minutes=5)
# The idle expiry slides at most once a minute: a page firing ten API calls a second must not
# cost ten writes a second, and a minute is nothing against a 30-minute idle timeout.
SLIDE_EVERY = timedelta(minutes=1)
_TOKEN_BYTES = 32  # 256 bits from the OS's CSPRNG
USER_AGENT_MAX = 256  # enough to tell "Firefox on Linux" from "curl"; the rest is fingerprinting


@dataclass(frozen=True)
class SessionRef:
    """What a cookie maps to before any tenant context exists."""

    tenant_id: UUID
    session_id: UUID
    account_id: UUID


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    return token, token_hash(token)


def create_session(
    session: TenantSession,
    account_id: UUID,
    *,
    source_address: str,
    user_agent: str,
    second_factor_pending: bool,
) -> tuple[SignInSession, str]:
    """A new session for a sign-in; returns the row and the cookie value, which is never stored."""
    token, hashed = _new_token()
    # A pending session gets only the time needed to type a code; a full one its idle timeout.
    idle = SECOND_FACTOR_TIMEOUT if second_factor_pending else IDLE_TIMEOUT
    row = SignInSession(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        token_hash=hashed,
        account_id=account_id,
        # The database clock, not this machine's: every instance must agree on when a session ends.
        idle_expires_at=func.now() + idle,
        absolute_expires_at=func.now() + ABSOLUTE_TIMEOUT,
        mfa_required=second_factor_pending,
        mfa_failures=0,
        source_address=source_address,
        user_agent=_printable(user_agent)[:USER_AGENT_MAX],
    )
    session.add(row)
    session.flush()
    # The sign-in is the account's activity: its sessions are gone a day after they end, this stays.
    session.execute(
        update(Account)
        .where(Account.tenant_id == session.tenant_id, Account.id == account_id)
        .values(last_signed_in_at=func.now())
    )
    return row, token


def _printable(value: str) -> str:
    # Text a person can read in a list of their sessions; a NUL byte would not even fit in TEXT.
    return "".join(ch for ch in value if ch.isprintable())


def lookup(db: Database, token: str) -> SessionRef | None:
    """Cookie value -> its tenant, session and account, for a live session only.

    The tenant comes from our own row, never from anything the caller sent alongside.
    """
    with platform_session(db) as session:
        found = session.execute(
            text("SELECT tenant_id, session_id, account_id FROM bookwarden_resolve_session(:h)"),
            {"h": token_hash(token)},
        ).first()
    if found is None:
        return None
    return SessionRef(found.tenant_id, found.session_id, found.account_id)


def live(session: TenantSession, session_id: UUID) -> SignInSession | None:
    """The session if it is neither revoked nor expired, read under the tenant's row-level security."""
    return session.scalar(
        select(SignInSession)
        .where(
            SignInSession.tenant_id == session.tenant_id,
            SignInSession.id == session_id,
            SignInSession.revoked_at.is_(None),
            SignInSession.idle_expires_at > func.now(),
            SignInSession.absolute_expires_at > func.now(),
        )
        .execution_options(populate_existing=True)
    )


def resolve(session: TenantSession, session_id: UUID) -> SignInSession | None:
    """The live session, its idle expiry slid forward (never past the absolute one)."""
    row = live(session, session_id)
    if row is None:
        return None
    # A pending session does not slide: it must finish its second step within its 5 minutes.
    if not (row.mfa_required and row.mfa_verified_at is None):
        session.execute(
            update(SignInSession)
            .where(
                SignInSession.tenant_id == session.tenant_id,
                SignInSession.id == row.id,
                SignInSession.last_seen_at < func.now() - SLIDE_EVERY,
            )
            .values(
                last_seen_at=func.now(),
                idle_expires_at=func.least(func.now() + IDLE_TIMEOUT, SignInSession.absolute_expires_at),
            )
            .execution_options(synchronize_session=False)
        )
    return row


def second_factor_verified(session: TenantSession, row: SignInSession) -> str:
    """Mark the second step done and give the session a new value: its privileges just rose."""
    row.mfa_verified_at = func.now()
    row.mfa_failures = 0
    row.last_seen_at = func.now()
    row.idle_expires_at = func.least(func.now() + IDLE_TIMEOUT, SignInSession.absolute_expires_at)
    return rotate(session, row.id)


def rotate(session: TenantSession, session_id: UUID) -> str:
    """A new cookie value for the same session; the old value stops working at once.

    For the signed-in user's own privilege change within a request that can send the new
    cookie back (the second factor completed). For a change made by someone else, use
    `privileges_changed`: their browser cannot be handed a new value.
    """
    token, hashed = _new_token()
    session.execute(
        update(SignInSession)
        .where(SignInSession.tenant_id == session.tenant_id, SignInSession.id == session_id)
        .values(token_hash=hashed)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return token


def record_second_factor_failure(session: TenantSession, row: SignInSession, allowed: int) -> bool:
    """Count a wrong code on this pending session; True when it has now used up its `allowed` tries."""
    row.mfa_failures = row.mfa_failures + 1
    session.flush()
    if row.mfa_failures >= allowed:
        revoke(session, row.id)
        return True
    return False


def revoke(session: TenantSession, session_id: UUID) -> bool:
    """Sign one session out; False when it was already signed out (or never existed)."""
    result = session.execute(
        update(SignInSession)
        .where(
            SignInSession.tenant_id == session.tenant_id,
            SignInSession.id == session_id,
            SignInSession.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def revoke_all_for_account(session: TenantSession, account_id: UUID) -> int:
    """End every live session of the account ("sign out everywhere"); returns how many.

    API tokens are untouched: they are revoked on their own (identity/tokens), and with every session
    when the account is disabled (identity/accounts/service.py).
    """
    result = session.execute(
        update(SignInSession)
        .where(
            SignInSession.tenant_id == session.tenant_id,
            SignInSession.account_id == account_id,
            SignInSession.revoked_at.is_(None),
            SignInSession.idle_expires_at > func.now(),
            SignInSession.absolute_expires_at > func.now(),
        )
        .values(revoked_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def privileges_changed(session: TenantSession, account_id: UUID) -> int:
    """Call when someone else changes what `account_id` may do (role granted, role permissions changed).

    Its sessions end, so its next sign-in starts a session with a new value, through the second
    factor when the new role requires one. Rotating in place is not possible here: the browser
    holding the session is not the one making this request, so it could not be sent the new value.
    Permissions themselves are read afresh on every request, so a revocation already takes
    effect at once; ending the sessions is what defeats a session value known before the change.
    """
    return revoke_all_for_account(session, account_id)
