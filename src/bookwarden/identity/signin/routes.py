"""Sign-in API: password, second factor, sign-out, and who the caller is.

Login and the second step come before authentication, so they declare no permission; sign-out
and "who am I" act only on the caller's own session or account, which any signed-in account may
do whatever its roles, so they declare none either (see `open_routes` in tests/api/test_api.py).

The session cookie is `Secure` (never sent over plain HTTP), `HttpOnly` (no script can read
it), `SameSite=Lax` (kept off cross-site subrequests and POSTs) and `Path=/`. It has no
Max-Age: it dies with the browser, and the server ends it after the idle or absolute timeout.

Login itself needs no same-origin check: its body must be JSON (anything else is a 422), which
a cross-site form cannot send, and a cross-site script cannot send it without a CORS preflight
that this API never answers. The cookie-authenticated routes below do check it.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.api.deps import authenticate, check_same_origin, database, session_cookie
from bookwarden.api.problems import problem, responses
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.record import record_now
from bookwarden.core.errors import Forbidden, Unauthenticated
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import Database
from bookwarden.identity.sessions import COOKIE_NAME
from bookwarden.identity.signin import service as signin
from bookwarden.identity.throttle import TooManyAttempts

router = APIRouter(prefix="/api/v1/auth", tags=["sign-in"], responses=responses(422))


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    institution: str = Field(min_length=1, max_length=63, description="the institution's slug")
    username: str = Field(min_length=1, max_length=254)
    # The policy ceiling (passwords.MAX_LENGTH_CEILING): longer input is no password of ours.
    password: str = Field(min_length=1, max_length=1024)


class SecondFactorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(
        min_length=1, max_length=64, description="the 6-digit code of the authenticator app, or a recovery code"
    )


class SignInOut(BaseModel):
    account_id: UUID
    mfa_required: bool = Field(description="true: send a code to POST /api/v1/auth/mfa before anything else")


class SignedOutEverywhere(BaseModel):
    revoked_sessions: int


class WhoAmI(BaseModel):
    kind: PrincipalKind
    id: UUID = Field(description="the account id (or the API token's id)")
    tenant_id: UUID | None
    permissions: list[str]


def source_address(request: Request) -> str:
    # The peer as the server sees it. Behind a proxy, name only that proxy in BOOKWARDEN_TRUSTED_PROXIES
    # (`bookwarden serve` passes it to uvicorn): trusting X-Forwarded-For from anyone would let a guesser
    # pick a fresh address for every attempt and walk past the address throttle.
    return request.client.host if request.client else "unknown"


def set_session_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE_NAME, token, secure=True, httponly=True, samesite="lax", path="/")


def _forget_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, secure=True, httponly=True, samesite="lax", path="/")


def too_many_attempts(request: Request, refused: TooManyAttempts) -> JSONResponse:
    # The shared problem renderer carries no headers, so this one response adds Retry-After itself.
    response = problem(refused.status, refused.slug, refused.title, refused.detail, request)
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


@router.post("/login", response_model=SignInOut, responses=responses(401, 403, 429))
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    previous: str | None = Depends(session_cookie),
    db: Database = Depends(database),
):
    """Sign in with a password. Every refusal is the same 401 invalid-credentials problem."""
    attempt = signin.SignInAttempt(
        institution=body.institution,
        username=body.username,
        password=body.password,
        source_address=source_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    try:
        signed_in = signin.sign_in(db, attempt)
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    if previous:
        # The browser's earlier session is replaced, not left alive behind the new cookie.
        signin.sign_out(db, previous)
    set_session_cookie(response, signed_in.session_token)
    return SignInOut(account_id=signed_in.account_id, mfa_required=signed_in.second_factor_pending)


@router.post("/mfa", response_model=SignInOut, responses=responses(401, 403, 429))
def second_factor(
    body: SecondFactorRequest,
    request: Request,
    response: Response,
    cookie: str | None = Depends(session_cookie),
    db: Database = Depends(database),
):
    """Complete a sign-in with a TOTP or recovery code; the session cookie gets a new value."""
    if not cookie:
        raise Unauthenticated("no sign-in is waiting for a second factor here; sign in with your password first")
    check_same_origin(request)
    try:
        done = signin.complete_second_factor(db, cookie, body.code, source_address(request))
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    set_session_cookie(response, done.session_token)
    return SignInOut(account_id=done.account_id, mfa_required=False)


@router.post("/logout", status_code=204, responses=responses(403))
def logout(request: Request, cookie: str | None = Depends(session_cookie), db: Database = Depends(database)):
    """End this browser's session. Holding the cookie is the authority: no permission is needed."""
    if cookie:
        check_same_origin(request)
    signin.sign_out(db, cookie)  # recorded even with no live session behind the cookie
    response = Response(status_code=204)
    _forget_cookie(response)
    return response


@router.post("/logout-everywhere", response_model=SignedOutEverywhere, responses=responses(401, 403))
def logout_everywhere(
    response: Response, principal: Principal = Depends(authenticate), db: Database = Depends(database)
):
    """End every session of the signed-in account, on every device. API tokens keep working."""
    if principal.kind is not PrincipalKind.ACCOUNT:
        raise Forbidden("sign out everywhere ends an account's sessions; sign in first (API tokens are revoked apart)")
    revoked = signin.sign_out_everywhere(db, principal)
    _forget_cookie(response)
    return SignedOutEverywhere(revoked_sessions=revoked)


@router.get("/me", response_model=WhoAmI, responses=responses(401, 403))
def me(principal: Principal = Depends(authenticate), db: Database = Depends(database)):
    """Who the caller is, in which institution, and what it may do."""
    target = "account" if principal.kind is PrincipalKind.ACCOUNT else principal.kind.value
    record_now(db, Action.SESSION_VIEWED, (target, principal.id), outcome=Outcome.SUCCEEDED)
    return WhoAmI(
        kind=principal.kind,
        id=principal.id,
        tenant_id=principal.tenant_id,
        permissions=sorted(principal.permissions),
    )
