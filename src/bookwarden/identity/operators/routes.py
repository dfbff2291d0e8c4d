"""Operator accounts over HTTP: enrolment with the one-time link, sign-in (password, then always a second
factor), sign-out, and who the operator is.

All of them come before authentication or act only on the caller's own session, like the institutions'
/api/v1/auth routes, so none declares a catalogue permission (see `open_routes` in tests/api/test_api.py).
A signed-in operator then uses every operator route (/api/v1/operator/...) with the session cookie
instead of a bearer token, and reaches an institution only through an approved grant named in
X-Operator-Grant, exactly as with an operator token.

The cookie is `bw_operator_session`: Secure, HttpOnly, SameSite=Strict (an operator console is never
entered from a link on another site, so the cookie need not travel with one), Path=/. Cookie-carrying
requests that change something pass the same-origin check (api/deps.py).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.api.deps import authenticate, check_same_origin, database, operator_cookie
from bookwarden.api.problems import responses
from bookwarden.core.errors import Forbidden, Unauthenticated
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import Database
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.identity.operators import signin as operator_signin
from bookwarden.identity.operators.signin import COOKIE_NAME
from bookwarden.identity.signin.routes import source_address, too_many_attempts
from bookwarden.identity.throttle import TooManyAttempts

router = APIRouter(prefix="/api/v1/operator/auth", tags=["operator: sign-in"], responses=responses(422))


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Input):
    username: str = Field(min_length=1, max_length=64)
    # The policy ceiling (passwords.MAX_LENGTH_CEILING): longer input is no password of ours.
    password: str = Field(min_length=1, max_length=1024)


class OperatorCodeIn(Input):
    code: str = Field(
        min_length=1, max_length=64, description="the 6-digit code of the authenticator app, or a recovery code"
    )


class EnrolmentIn(Input):
    token: str = Field(min_length=1, max_length=1024, description="the token from the link's #token= fragment")


class EnrolmentCompleteIn(EnrolmentIn):
    password: str = Field(min_length=1, max_length=1024, description="at least 15 characters (operator policy)")
    code: str = Field(min_length=1, max_length=32, description="the code the authenticator app shows now")


class OperatorSignInOut(BaseModel):
    operator_id: UUID
    mfa_required: bool = Field(description="true: send a code to POST /api/v1/operator/auth/mfa before anything else")


class EnrolmentStartOut(BaseModel):
    secret: str = Field(description="base32; type it into the app when the QR code cannot be scanned. Shown once.")
    otpauth_uri: str = Field(description="show as a QR code for the authenticator app to scan")
    expires_at: datetime = Field(description="complete the enrolment before this, or start again")


class OperatorEnrolledOut(BaseModel):
    operator_id: UUID
    recovery_codes: list[str] = Field(description="each works once; shown now and never again")


class OperatorMe(BaseModel):
    id: UUID
    username: str
    role: str
    permissions: list[str]


def _set_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE_NAME, token, secure=True, httponly=True, samesite="strict", path="/")


def _forget_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, secure=True, httponly=True, samesite="strict", path="/")


@router.post("/enrolment", status_code=201, response_model=EnrolmentStartOut, responses=responses(401))
def start_enrolment(body: EnrolmentIn, db: Database = Depends(database)):
    """With the one-time link from `bookwarden operator create`: a new authenticator app secret."""
    started = operator_accounts.start_enrolment(db, body.token)
    return EnrolmentStartOut(secret=started.secret, otpauth_uri=started.provisioning_uri, expires_at=started.expires_at)


@router.post("/enrolment/complete", response_model=OperatorEnrolledOut, responses=responses(401, 409))
def complete_enrolment(body: EnrolmentCompleteIn, db: Database = Depends(database)):
    """Set the password and activate the app with its current code; the link is used up. Then sign in."""
    enrolled = operator_accounts.complete_enrolment(db, body.token, body.password, body.code)
    return OperatorEnrolledOut(operator_id=enrolled.account_id, recovery_codes=enrolled.recovery_codes)


@router.post("/login", response_model=OperatorSignInOut, responses=responses(401, 429))
def login(
    body: LoginIn,
    request: Request,
    response: Response,
    previous: str | None = Depends(operator_cookie),
    db: Database = Depends(database),
):
    """Sign in with a password; a second factor always follows. Every refusal is the same 401."""
    try:
        signed_in = operator_signin.sign_in(
            db, body.username, body.password, source_address(request), request.headers.get("user-agent", "")
        )
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    if previous:
        operator_signin.sign_out(db, previous)  # the browser's earlier session is replaced, not left alive
    _set_cookie(response, signed_in.session_token)
    return OperatorSignInOut(operator_id=signed_in.account_id, mfa_required=True)


@router.post("/mfa", response_model=OperatorSignInOut, responses=responses(401, 403, 429))
def second_factor(
    body: OperatorCodeIn,
    request: Request,
    response: Response,
    cookie: str | None = Depends(operator_cookie),
    db: Database = Depends(database),
):
    """Complete the sign-in with a TOTP or recovery code; the session cookie gets a new value."""
    if not cookie:
        raise Unauthenticated("no operator sign-in is waiting for a second factor here; sign in first")
    check_same_origin(request)
    try:
        done = operator_signin.complete_second_factor(db, cookie, body.code, source_address(request))
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    _set_cookie(response, done.session_token)
    return OperatorSignInOut(operator_id=done.account_id, mfa_required=False)


@router.post("/logout", status_code=204, responses=responses(403))
def logout(request: Request, cookie: str | None = Depends(operator_cookie), db: Database = Depends(database)):
    """End this browser's operator session. Holding the cookie is the authority."""
    if cookie:
        check_same_origin(request)
    operator_signin.sign_out(db, cookie)
    response = Response(status_code=204)
    _forget_cookie(response)
    return response


@router.get("/me", response_model=OperatorMe, responses=responses(401, 403))
def me(principal: Principal = Depends(authenticate), db: Database = Depends(database)):
    """The signed-in operator: account, role and platform permissions."""
    if principal.kind is not PrincipalKind.OPERATOR or principal.tenant_id is not None:
        raise Forbidden("this names an operator's own account: sign in at /api/v1/operator/auth/login")
    found = operator_signin.who(db, principal)
    return OperatorMe(id=found.id, username=found.username, role=found.role, permissions=found.permissions)
