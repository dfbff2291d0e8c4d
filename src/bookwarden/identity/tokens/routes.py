"""API tokens over HTTP: an institution's tokens under tokens.manage, and each person's own.

- /api/v1/tokens (tokens.manage): every token of the institution, personal and service, and revoking
  any of them.
- /api/v1/auth/me/tokens: the caller's own. Minting takes the account's sign-in session (a token never
  mints a token; an account holding administrative permissions cannot have a session without its second
  factor); listing and revoking take the session or one of the account's tokens (a token may end itself).
- /api/v1/operator/auth/me/tokens: the same for an operator; minting takes an operator session, which
  exists only once the second factor passed.

The "own" routes declare no catalogue permission, like /api/v1/auth/me: they reach nothing but the
caller's own credentials, and a token minted there carries at most what its owner holds (see
`open_routes` in tests/api/test_api.py). identity/tokens/service.py holds the rules.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.access.power import PowerClass, power_class
from bookwarden.api.deps import authenticate, database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import TENANT_PERMISSIONS, Permission
from bookwarden.core.principal import Principal, permissions_from
from bookwarden.core.text import line
from bookwarden.db.session import Database, platform_session
from bookwarden.identity.models import ApiToken, OperatorToken
from bookwarden.identity.tokens import service as tokens

router = APIRouter(prefix="/api/v1", tags=["tokens"], responses=responses(401, 403, 422))

# Only what a token of each kind may carry can be named: the schema itself says so.
TenantTokenPermission = enum.StrEnum("TenantTokenPermission", {p.name: p.value for p in sorted(TENANT_PERMISSIONS)})
OperatorTokenPermission = enum.StrEnum(
    "OperatorTokenPermission", {p.name: p.value for p in sorted(tokens.OPERATOR_TOKEN_PERMISSIONS)}
)
_ORDINARY_DAYS = tokens.MAX_LIFETIME[PowerClass.ORDINARY].days
_ADMINISTRATIVE_DAYS = tokens.MAX_LIFETIME[PowerClass.ADMINISTRATIVE].days
_PLATFORM_HOURS = int(tokens.MAX_LIFETIME[PowerClass.PLATFORM].total_seconds() // 3600)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenIn(Input):
    name: line(tokens.NAME_LENGTH) = Field(description="what the token is for")
    permissions: list[TenantTokenPermission] = Field(
        min_length=1, max_length=len(TENANT_PERMISSIONS), description="at most what your account holds"
    )
    days: int | None = Field(
        default=None,
        ge=1,
        le=_ORDINARY_DAYS,
        description=f"lifetime: at most {_ORDINARY_DAYS} days with ordinary permissions, {_ADMINISTRATIVE_DAYS} "
        "with administrative ones; default 90 days or that maximum",
    )


class OperatorTokenIn(Input):
    name: line(tokens.NAME_LENGTH) = Field(description="what the token is for")
    permissions: list[OperatorTokenPermission] = Field(
        min_length=1,
        max_length=len(tokens.OPERATOR_TOKEN_PERMISSIONS),
        description="at most what your role holds; break-glass is never held by a token",
    )
    hours: int = Field(default=24, ge=1, le=_PLATFORM_HOURS, description=f"lifetime: at most {_PLATFORM_HOURS} hours")


class TokenOut(BaseModel):
    id: UUID
    name: str
    owner_id: UUID | None = Field(description="the account (or operator account) it acts for; null: a service token")
    permissions: list[str]
    power_class: PowerClass
    created_at: datetime
    expires_at: datetime = Field(description="also ended earlier by its class's maximum lifetime from created_at")
    last_used_at: datetime | None = Field(description="kept to the minute")
    revoked_at: datetime | None
    status: tokens.TokenStatus


class MintedOut(TokenOut):
    token: str = Field(description="send as Authorization: Bearer <token>. Shown now and never again.")


def _out(row: ApiToken | OperatorToken) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        owner_id=row.owner_id,
        permissions=list(row.scopes),
        power_class=power_class(permissions_from(row.scopes)),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        status=tokens.status_of(row),
    )


def _minted(row: ApiToken | OperatorToken, secret: str) -> MintedOut:
    return MintedOut(**_out(row).model_dump(), token=secret)


# -- the institution's tokens (tokens.manage) ------------------------------------------------------


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(principal: Principal = Depends(requires(Permission.TOKENS_MANAGE)), db: Database = Depends(database)):
    """Every API token of the institution, newest first (revoked and expired ones too); never a secret."""
    with tenant_scope(db, principal) as session:
        return [_out(row) for row in tokens.list_api_tokens(session, principal)]


@router.post("/tokens/{token_id}/revoke", response_model=TokenOut, responses=responses(404, 409))
def revoke_token(
    token_id: UUID,
    principal: Principal = Depends(requires(Permission.TOKENS_MANAGE)),
    db: Database = Depends(database),
):
    """End any token of the institution at once; the security contacts are told."""
    with tenant_scope(db, principal) as session:
        return _out(tokens.revoke_tenant_token(session, principal, token_id))


# -- an account's own --------------------------------------------------------------------------------


@router.get("/auth/me/tokens", response_model=list[TokenOut])
def list_own_tokens(principal: Principal = Depends(authenticate), db: Database = Depends(database)):
    """The signed-in account's own tokens (or, called with a token, its owner's)."""
    with tenant_scope(db, principal) as session:
        return [_out(row) for row in tokens.list_own_api_tokens(session, principal)]


@router.post("/auth/me/tokens", status_code=201, response_model=MintedOut)
def mint_own_token(body: TokenIn, principal: Principal = Depends(authenticate), db: Database = Depends(database)):
    """Mint a token of your own, signed in (not with a token): at most your permissions, for at most your
    class's lifetime; the security contacts are told. Shown once."""
    permissions = sorted(Permission(p) for p in body.permissions)
    ttl = timedelta(days=body.days) if body.days else tokens.default_lifetime(permissions)
    with tenant_scope(db, principal) as session:
        return _minted(*tokens.mint_own_api_token(session, principal, body.name, permissions, ttl))


@router.post("/auth/me/tokens/{token_id}/revoke", response_model=TokenOut, responses=responses(404, 409))
def revoke_own_token(token_id: UUID, principal: Principal = Depends(authenticate), db: Database = Depends(database)):
    """End one of your own tokens (a token may end itself)."""
    with tenant_scope(db, principal) as session:
        return _out(tokens.revoke_own_api_token(session, principal, token_id))


# -- an operator's own ------------------------------------------------------------------------------


@router.get("/operator/auth/me/tokens", response_model=list[TokenOut], tags=["operator: sign-in"])
def list_own_operator_tokens(principal: Principal = Depends(authenticate), db: Database = Depends(database)):
    """The signed-in operator's own operator tokens (or, called with one, its owner's)."""
    with platform_session(db) as session:
        return [_out(row) for row in tokens.list_own_operator_tokens(session, principal)]


@router.post("/operator/auth/me/tokens", status_code=201, response_model=MintedOut, tags=["operator: sign-in"])
def mint_own_operator_token(
    body: OperatorTokenIn, principal: Principal = Depends(authenticate), db: Database = Depends(database)
):
    """Mint an operator token of your own, from an operator session (password and second factor; not with a
    token): at most your role's permissions, never break-glass, for at most 7 days. Shown once."""
    permissions = sorted(Permission(p) for p in body.permissions)
    with platform_session(db) as session:
        return _minted(
            *tokens.mint_own_operator_token(session, principal, body.name, permissions, timedelta(hours=body.hours))
        )


@router.post(
    "/operator/auth/me/tokens/{token_id}/revoke",
    response_model=TokenOut,
    tags=["operator: sign-in"],
    responses=responses(404, 409),
)
def revoke_own_operator_token(
    token_id: UUID, principal: Principal = Depends(authenticate), db: Database = Depends(database)
):
    """End one of your own operator tokens (a token may end itself)."""
    with platform_session(db) as session:
        return _out(tokens.revoke_own_operator_token(session, principal, token_id))
