"""API tokens: random, shown once, stored as SHA-256, with expiry and scopes.

A token carries 256 bits from the OS's CSPRNG, so a fast hash is enough: nothing about it
can be guessed, and the stored hash is useless to whoever reads the table.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bookwarden.access.permissions import PLATFORM_PERMISSIONS, TENANT_PERMISSIONS, Permission
from bookwarden.access.principal import SYSTEM, Principal, PrincipalKind, permissions_from
from bookwarden.access.roles import notices
from bookwarden.audit.events import Action
from bookwarden.audit.record import current, record
from bookwarden.core.errors import InvalidInput
from bookwarden.db.session import Database, TenantSession, platform_session
from bookwarden.identity.models import ApiToken, OperatorToken

TENANT_PREFIX = "bwt_"
OPERATOR_PREFIX = "bwo_"
MAX_TTL = timedelta(days=366)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check(permissions: list[Permission], allowed: frozenset[Permission], ttl: timedelta) -> None:
    if not permissions:
        raise InvalidInput("a token needs at least one permission")
    extra = set(permissions) - allowed
    if extra:
        raise InvalidInput(f"permissions not allowed here: {', '.join(sorted(extra))}")
    if not timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise InvalidInput("token lifetime must be between one minute and 366 days")


def issue_api_token(
    session: TenantSession, name: str, permissions: list[Permission], ttl: timedelta
) -> tuple[ApiToken, str]:
    """A tenant token; returns the row and the token, which is never retrievable again."""
    _check(permissions, TENANT_PERMISSIONS, ttl)
    secret = TENANT_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        tenant_id=session.tenant_id,
        name=name,
        token_hash=token_hash(secret),
        scopes=sorted(permissions),
        expires_at=datetime.now(UTC) + ttl,
    )
    session.add(row)
    session.flush()
    record(session, Action.TOKEN_ISSUED, ("api_token", row.id), details=_issued(row))
    # A new machine credential is an entitlement: the security contacts hear of it (never its secret).

    notices.entitlement_changed(
        session,
        current().principal or SYSTEM,
        notices.EntitlementEvent.API_TOKEN_CREATED,
        f"API token {name!r}",
        {"permissions": ", ".join(row.scopes), "expires_at": row.expires_at.isoformat(timespec="seconds")},
        permissions=permissions,
    )
    return row, secret


def _issued(row: ApiToken | OperatorToken) -> dict:
    # What the token may do and until when; never the token, nor its hash.
    return {"name": row.name, "permissions": list(row.scopes), "expires_at": row.expires_at.isoformat()}


def issue_operator_token(
    session: Session, name: str, permissions: list[Permission], ttl: timedelta
) -> tuple[OperatorToken, str]:
    _check(permissions, PLATFORM_PERMISSIONS, ttl)
    secret = OPERATOR_PREFIX + secrets.token_urlsafe(32)
    row = OperatorToken(
        name=name, token_hash=token_hash(secret), scopes=sorted(permissions), expires_at=datetime.now(UTC) + ttl
    )
    session.add(row)
    session.flush()
    record(session, Action.TOKEN_ISSUED, ("operator_token", row.id), details=_issued(row))
    return row, secret


def revoke_api_token(session: TenantSession, token_id: UUID) -> bool:
    row = session.get(ApiToken, (session.tenant_id, token_id))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = datetime.now(UTC)
    record(session, Action.TOKEN_REVOKED, ("api_token", row.id))
    return True


def authenticate(db: Database, presented: str) -> Principal | None:
    """Token -> principal, or None. The tenant comes from our own row, never from the token text."""
    if presented.startswith(OPERATOR_PREFIX):
        with platform_session(db) as session:
            row = session.scalar(
                select(OperatorToken).where(
                    OperatorToken.token_hash == token_hash(presented),
                    OperatorToken.revoked_at.is_(None),
                    OperatorToken.expires_at > func.now(),
                )
            )
            if row is None:
                return None
            return Principal(PrincipalKind.OPERATOR_TOKEN, row.id, None, permissions_from(row.scopes))
    if not presented.startswith(TENANT_PREFIX):
        return None
    with platform_session(db) as session:
        found = session.execute(
            text("SELECT tenant_id, token_id, scopes FROM bookwarden_resolve_api_token(:h)"),
            {"h": token_hash(presented)},
        ).first()
    if found is None:
        return None
    return Principal(PrincipalKind.API_TOKEN, found.token_id, found.tenant_id, permissions_from(found.scopes))
