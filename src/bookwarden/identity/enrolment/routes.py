"""Second factors over HTTP: one's own enrolment, security keys at sign-in, and an administrator's reset.

- /api/v1/auth/me/mfa/...: the signed-in account's own factors. They take a sign-in session only
  (`signed_in_account`): a second factor belongs to a person, and an API token, a machine's
  credential, has none to manage, so it gets 403. They declare no catalogue permission, like
  /api/v1/auth/me: they reach nothing but the caller's own account, and protecting it is open to
  every account whatever its roles (a new role holds no permission, so one for this would leave
  its holders unable to protect themselves). See `open_routes` in tests/api/test_api.py.
- /api/v1/auth/mfa/webauthn...: a security key as the second step of a sign-in. Like POST
  /api/v1/auth/mfa they come before authentication, so they check the same-origin rule themselves.
- /api/v1/accounts/{account_id}/mfa-reset: an administrator's reset, under accounts.manage; then
  /api/v1/accounts/{account_id}/mfa-enrolment-link mails the holder a one-time link, with which
  /api/v1/auth/mfa-enrolment (link and password) and /api/v1/auth/mfa-enrolment/confirm (the app's
  code) enrol a new authenticator app and end in a normal session (identity/enrolment/links.py).
  Like the other link routes they come before authentication and declare no permission.

Security keys are used at BOOKWARDEN_PUBLIC_URL (see enrolment.RelyingParty), read and checked
when this module loads: a wrong setting stops the application, not a sign-in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.api import bodies
from bookwarden.api.deps import authenticate, check_same_origin, database, requires, session_cookie, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.errors import Forbidden, Unauthenticated
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.core.text import line
from bookwarden.db.session import Database
from bookwarden.identity import sessions
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.enrolment import service as enrolment
from bookwarden.identity.enrolment.service import RelyingParty, SignedInAccount, relying_party
from bookwarden.identity.models import SecurityKey

# The sign-in routes' own helpers: the cookie is set, and a throttled attempt answered, exactly as at login.
from bookwarden.identity.signin.routes import SignInOut, set_session_cookie, source_address, too_many_attempts
from bookwarden.identity.throttle import TooManyAttempts

relying_party()  # read and checked now: a wrong BOOKWARDEN_PUBLIC_URL stops the start, not a sign-in

router = APIRouter(tags=["second factor"], responses=responses(422))

KeyName = line(100)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MfaCodeIn(Input):
    code: str = Field(min_length=1, max_length=32, description="the 6-digit code the authenticator app shows now")


class NewSecurityKeyIn(Input):
    credential: dict[str, Any] = Field(
        description="the PublicKeyCredential from navigator.credentials.create(), in JSON (binary fields base64url)"
    )
    name: KeyName = Field(default=enrolment.DEFAULT_KEY_NAME, description="your own label for the key")


class AssertionIn(Input):
    credential: dict[str, Any] = Field(
        description="the PublicKeyCredential from navigator.credentials.get(), in JSON (binary fields base64url)"
    )


class RenameIn(Input):
    name: KeyName


class TotpStartOut(BaseModel):
    secret: str = Field(description="base32; type it into the app when the QR code cannot be scanned. Shown once.")
    otpauth_uri: str = Field(description="show as a QR code for the authenticator app to scan")
    expires_at: datetime = Field(description="confirm a code before this, or start again")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="each works once; shown now and never again")


class WebAuthnOptionsOut(BaseModel):
    options: dict[str, Any] = Field(
        description="options for navigator.credentials (binary fields base64url); answer within their timeout, once"
    )


class SecurityKeyOut(BaseModel):
    id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    transports: list[str]
    aaguid: str = Field(description="the authenticator model; all zeros when it does not say")
    backed_up: bool = Field(description="a passkey synced to other devices rather than bound to one")


class SecurityKeyAddedOut(SecurityKeyOut):
    recovery_codes: list[str] = Field(
        description="issued when the account had none (its first factor): shown now and never again; else empty"
    )


class MfaResetOut(BaseModel):
    account_id: UUID
    authenticator_app_removed: bool
    security_keys_removed: int
    recovery_codes_removed: int
    sessions_ended: int


def signed_in_account(
    principal: Principal = Depends(authenticate),
    cookie: str | None = Depends(session_cookie),
    db: Database = Depends(database),
) -> SignedInAccount:
    """The caller as an account signed in with a session; API tokens are refused (403)."""
    # An account principal comes only from the cookie: with a bearer token as well, the token wins.
    if principal.kind is not PrincipalKind.ACCOUNT or not cookie:
        raise Forbidden(
            "second factors belong to a person's account: sign in with your password (an API token has none)"
        )
    found = sessions.lookup(db, cookie)
    if found is None or found.account_id != principal.id:
        raise Unauthenticated("the session is not valid (unknown, expired or signed out); sign in again")
    return SignedInAccount(principal, found.session_id)


def _key_out(key: SecurityKey) -> SecurityKeyOut:
    return SecurityKeyOut(
        id=key.id,
        name=key.name,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        transports=list(key.transports or ()),
        aaguid=str(key.aaguid),
        backed_up=key.backed_up,
    )


# --- the authenticator app and recovery codes ------------------------------------------------


@router.post("/api/v1/auth/me/mfa/totp", status_code=201, response_model=TotpStartOut, responses=responses(401, 403))
def start_totp(me: SignedInAccount = Depends(signed_in_account), db: Database = Depends(database)):
    """Start enrolling an authenticator app: a new secret, inactive until a code confirms it."""
    with tenant_scope(db, me.principal) as session:
        started = enrolment.start_totp(session, me)
    return TotpStartOut(secret=started.secret, otpauth_uri=started.provisioning_uri, expires_at=started.expires_at)


@router.post("/api/v1/auth/me/mfa/totp/confirm", response_model=RecoveryCodesOut, responses=responses(401, 403, 409))
def confirm_totp(
    body: MfaCodeIn,
    response: Response,
    me: SignedInAccount = Depends(signed_in_account),
    db: Database = Depends(database),
):
    """Activate the new secret with a code from the app; returns ten fresh recovery codes, shown once."""
    with tenant_scope(db, me.principal) as session:
        confirmed = enrolment.confirm_totp(session, me, body.code)
    if confirmed.session_token:
        set_session_cookie(response, confirmed.session_token)
    return RecoveryCodesOut(recovery_codes=confirmed.recovery_codes)


@router.delete("/api/v1/auth/me/mfa/totp", status_code=204, responses=responses(401, 403, 404, 409))
def remove_totp(me: SignedInAccount = Depends(signed_in_account), db: Database = Depends(database)):
    """Remove the authenticator app; refused when it is the last factor your role requires."""
    with tenant_scope(db, me.principal) as session:
        enrolment.remove_totp(session, me)
    return Response(status_code=204)


@router.post("/api/v1/auth/me/mfa/recovery-codes", response_model=RecoveryCodesOut, responses=responses(401, 403, 409))
def regenerate_recovery_codes(me: SignedInAccount = Depends(signed_in_account), db: Database = Depends(database)):
    """Ten new recovery codes in place of all earlier ones; needs a session that passed its second factor."""
    with tenant_scope(db, me.principal) as session:
        codes = enrolment.regenerate_recovery_codes(session, me)
    return RecoveryCodesOut(recovery_codes=codes)


# --- security keys ---------------------------------------------------------------------------


@router.post("/api/v1/auth/me/mfa/webauthn/options", response_model=WebAuthnOptionsOut, responses=responses(401, 403))
def security_key_options(
    me: SignedInAccount = Depends(signed_in_account),
    rp: RelyingParty = Depends(relying_party),
    db: Database = Depends(database),
):
    """Options for registering a security key (staff only); the challenge is kept for this session."""
    with tenant_scope(db, me.principal) as session:
        return WebAuthnOptionsOut(options=enrolment.security_key_options(session, me, rp))


@router.post(
    "/api/v1/auth/me/mfa/webauthn/credentials",
    status_code=201,
    response_model=SecurityKeyAddedOut,
    responses=responses(401, 403, 409),
)
@bodies.machine_made("credential", reason="the browser's WebAuthn credential, verified as its authenticator made it")
def add_security_key(
    body: NewSecurityKeyIn,
    response: Response,
    me: SignedInAccount = Depends(signed_in_account),
    rp: RelyingParty = Depends(relying_party),
    db: Database = Depends(database),
):
    """Register the security key that answered the options (staff only)."""
    # Two transactions: the challenge stays spent even when the response is then refused.
    with tenant_scope(db, me.principal) as session:
        challenge = enrolment.take_challenge(session, me.session_id, enrolment.Ceremony.REGISTER)
    with tenant_scope(db, me.principal) as session:
        added = enrolment.add_security_key(session, me, rp, challenge, body.credential, body.name)
        out = SecurityKeyAddedOut(**_key_out(added.security_key).model_dump(), recovery_codes=added.recovery_codes)
    if added.session_token:
        set_session_cookie(response, added.session_token)
    return out


@router.get(
    "/api/v1/auth/me/mfa/webauthn/credentials", response_model=list[SecurityKeyOut], responses=responses(401, 403)
)
def list_security_keys(me: SignedInAccount = Depends(signed_in_account), db: Database = Depends(database)):
    """Your security keys, oldest first."""
    with tenant_scope(db, me.principal) as session:
        return [_key_out(key) for key in enrolment.view_security_keys(session, me)]


@router.patch(
    "/api/v1/auth/me/mfa/webauthn/credentials/{key_id}",
    response_model=SecurityKeyOut,
    responses=responses(401, 403, 404),
)
def rename_security_key(
    key_id: UUID,
    body: RenameIn,
    me: SignedInAccount = Depends(signed_in_account),
    db: Database = Depends(database),
):
    with tenant_scope(db, me.principal) as session:
        return _key_out(enrolment.rename_security_key(session, me, key_id, body.name))


@router.delete(
    "/api/v1/auth/me/mfa/webauthn/credentials/{key_id}", status_code=204, responses=responses(401, 403, 404, 409)
)
def remove_security_key(
    key_id: UUID, me: SignedInAccount = Depends(signed_in_account), db: Database = Depends(database)
):
    """Remove one of your keys; refused when it is the last factor your role requires."""
    with tenant_scope(db, me.principal) as session:
        enrolment.remove_security_key(session, me, key_id)
    return Response(status_code=204)


# --- a security key as the second step of a sign-in ------------------------------------------


def _pending_cookie(request: Request, cookie: str | None) -> str:
    if not cookie:
        raise Unauthenticated("no sign-in is waiting for a second factor here; sign in with your password first")
    check_same_origin(request)
    return cookie


@router.post("/api/v1/auth/mfa/webauthn/options", response_model=WebAuthnOptionsOut, responses=responses(401, 403, 409))
def sign_in_options(
    request: Request,
    cookie: str | None = Depends(session_cookie),
    rp: RelyingParty = Depends(relying_party),
    db: Database = Depends(database),
):
    """Options for signing in with a security key, after the password; the challenge is kept for this session."""
    return WebAuthnOptionsOut(options=enrolment.sign_in_options(db, _pending_cookie(request, cookie), rp))


@router.post("/api/v1/auth/mfa/webauthn", response_model=SignInOut, responses=responses(401, 403, 429))
@bodies.machine_made("credential", reason="the browser's WebAuthn credential, verified as its authenticator made it")
def sign_in_with_security_key(
    body: AssertionIn,
    request: Request,
    response: Response,
    cookie: str | None = Depends(session_cookie),
    rp: RelyingParty = Depends(relying_party),
    db: Database = Depends(database),
):
    """Complete a sign-in with a security key; the session cookie gets a new value."""
    token = _pending_cookie(request, cookie)
    try:
        done = enrolment.complete_webauthn_sign_in(db, token, body.credential, source_address(request), rp)
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    set_session_cookie(response, done.session_token)
    return SignInOut(account_id=done.account_id, mfa_required=False)


# --- an administrator's reset ----------------------------------------------------------------


@router.post(
    "/api/v1/accounts/{account_id}/mfa-reset",
    response_model=MfaResetOut,
    tags=["accounts"],
    responses=responses(401, 403, 404),
)
def reset_second_factors(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """Remove every second factor of an account and end its sessions, for a holder who lost them all.

    The institution's security contacts are told (a notice that cannot be muted for an administrator's account).
    """
    with tenant_scope(db, principal) as session:
        reset = enrolment.reset_second_factors(session, principal, account_id)
    return MfaResetOut(
        account_id=account_id,
        authenticator_app_removed=reset.authenticator_app,
        security_keys_removed=reset.security_keys,
        recovery_codes_removed=reset.recovery_codes,
        sessions_ended=reset.sessions_ended,
    )


# --- an administrator's enrolment link, after a reset ------------------------------------------


class EnrolmentLinkOut(BaseModel):
    account_id: UUID
    expires_at: datetime = Field(description="the link, mailed to the account's own address, works once until then")


class EnrolmentBeginIn(Input):
    token: str = Field(min_length=1, max_length=1024, description="the token from the link's #token= fragment")
    # The policy ceiling (passwords.MAX_LENGTH_CEILING): longer input is no password of ours.
    password: str = Field(min_length=1, max_length=1024)


class EnrolmentBegunOut(TotpStartOut):
    account_id: UUID


class MfaEnrolledOut(RecoveryCodesOut):
    account_id: UUID


@router.post(
    "/api/v1/accounts/{account_id}/mfa-enrolment-link",
    response_model=EnrolmentLinkOut,
    tags=["accounts"],
    responses=responses(401, 403, 404, 409),
)
def send_enrolment_link(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """Mail an account without a second factor (after a reset) a one-time link to enrol a new one (24 hours).

    The link goes to the account's own address and is never shown here; the security contacts are told.
    """
    with tenant_scope(db, principal) as session:
        sent = enrolment_links.send_link(session, db.master, principal, account_id)
    return EnrolmentLinkOut(account_id=sent.account_id, expires_at=sent.expires_at)


@router.post(
    "/api/v1/auth/mfa-enrolment",
    status_code=201,
    response_model=EnrolmentBegunOut,
    responses=responses(401, 403, 429),
)
def begin_enrolment(body: EnrolmentBeginIn, request: Request, response: Response, db: Database = Depends(database)):
    """With an administrator's enrolment link and your password: a new authenticator app secret.

    The answer sets a session cookie that can do one thing: confirm the app's code at
    /api/v1/auth/mfa-enrolment/confirm. A wrong password is refused like a sign-in (401, throttled).
    """
    try:
        begun = enrolment_links.begin(
            db, body.token, body.password, source_address(request), request.headers.get("user-agent", "")
        )
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    set_session_cookie(response, begun.session_token)
    return EnrolmentBegunOut(
        account_id=begun.account_id,
        secret=begun.secret,
        otpauth_uri=begun.provisioning_uri,
        expires_at=begun.expires_at,
    )


@router.post("/api/v1/auth/mfa-enrolment/confirm", response_model=MfaEnrolledOut, responses=responses(401, 403, 409))
def confirm_enrolment(
    body: MfaCodeIn,
    request: Request,
    response: Response,
    cookie: str | None = Depends(session_cookie),
    db: Database = Depends(database),
):
    """Activate the new app with its current code: ten recovery codes (shown once), and you are signed in."""
    enrolled = enrolment_links.confirm(db, _pending_cookie(request, cookie), body.code)
    set_session_cookie(response, enrolled.session_token)
    return MfaEnrolledOut(account_id=enrolled.account_id, recovery_codes=enrolled.recovery_codes)
