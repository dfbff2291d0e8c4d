"""Accounts over HTTP: an institution's administrators invite, list, disable, enable and delete
accounts, and have invitation and reset links mailed; holders use those links to set passwords.

An administrator never sets or sees someone else's password, nor the links that set one: the
links go only to the holder's mailbox (identity/links.py).

The three routes under /api/v1/auth come before authentication, so they declare no permission
(see `open_routes` in tests/api/test_api.py): accepting an invitation and resetting a password are
authorised by the signed link itself, and asking for a reset answers everyone alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import FieldError, problem, responses
from bookwarden.core.pagination import Page, decode_cursor, encode_cursor
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line
from bookwarden.crypto.fields import decrypt_field
from bookwarden.db.session import Database, TenantSession
from bookwarden.identity import links
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountKind, AccountStatus
from bookwarden.identity.passwords import MAX_LENGTH_CEILING, PasswordRejected
from bookwarden.identity.roles import held_roles
from bookwarden.identity.signin.routes import source_address, too_many_attempts
from bookwarden.identity.throttle import TooManyAttempts
from bookwarden.notify.service import EmailAddress

router = APIRouter(prefix="/api/v1", responses=responses(422))

# The schema says exactly what create_account accepts: no character Python counts as a space (it
# refuses those), nor any control character. Explicit ranges, not \s: regex engines disagree on it.
Username = Annotated[
    str,
    StringConstraints(pattern=r"^[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{2,254}$"),
]
DisplayName = line(200)
# Any text: a malformed link gets the same 401 as a forged or used one, never a 422 of its own.
LinkToken = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
NewPassword = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LENGTH_CEILING)]
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Cursor = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{22}$", description="next_cursor of the previous page")]

ADMIN_TAGS = ["accounts"]
LINK_TAGS = ["sign-in"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountIn(Input):
    kind: AccountKind
    username: Username
    email: EmailAddress = Field(description="where the invitation goes")
    display_name: DisplayName | None = None


class AccountOut(BaseModel):
    id: UUID
    kind: AccountKind
    # Personal fields read null once the account's key is destroyed (unreadable anywhere, backups too).
    username: str | None
    email: str | None
    display_name: str | None
    status: AccountStatus
    roles: list[str]
    created_at: datetime


class LinkSent(BaseModel):
    expires_at: datetime = Field(description="when the mailed link stops working")


class AcceptInvitationIn(Input):
    token: LinkToken = Field(description="the token from the invitation link (after #token=)")
    password: NewPassword


class ResetPasswordIn(Input):
    token: LinkToken = Field(description="the token from the reset link (after #token=)")
    password: NewPassword


class ResetRequestIn(Input):
    institution: Annotated[str, StringConstraints(min_length=1, max_length=63)] = Field(
        description="the institution's slug"
    )
    username: Annotated[str, StringConstraints(min_length=1, max_length=254)]


class ResetRequested(BaseModel):
    detail: str


RESET_REQUESTED = ResetRequested(detail=links.RESET_REQUESTED)


def _account_out(session: TenantSession, account: Account, key: bytes | None) -> AccountOut:
    def field(column: str) -> str | None:
        if key is None:
            return None
        return decrypt_field(key, session.tenant_id, accounts.TABLE, column, account.id, getattr(account, column))

    return AccountOut(
        id=account.id,
        kind=account.kind,
        username=field("username"),
        email=field("email"),
        display_name=field("display_name"),
        status=account.status,
        roles=held_roles(session, account.id),
        created_at=account.created_at,
    )


def _accounts_out(session: TenantSession, found: list[Account]) -> list[AccountOut]:
    # One keyring query for all of them rather than one per account; destroyed keys are absent.
    keys = session.keyring.subject_keys(session.tenant_id, [a.id for a in found])
    return [_account_out(session, a, keys.get(a.id)) for a in found]


def _one_out(session: TenantSession, account: Account) -> AccountOut:
    return _accounts_out(session, [account])[0]


# --- administrators ------------------------------------------------------------------------


@router.post("/accounts", status_code=201, response_model=AccountOut, tags=ADMIN_TAGS, responses=responses(409))
def create_account(
    body: AccountIn,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """Create an invited account and mail it an invitation link (valid 72 hours) to set its password."""
    with tenant_scope(db, principal) as session:
        account = accounts.create_account(
            session,
            principal,
            kind=body.kind,
            username=body.username,
            email=body.email,
            display_name=body.display_name,
        )
        links.send_invitation(session, db.master, principal, account.id)
        return _one_out(session, account)


@router.get("/accounts", response_model=Page[AccountOut], tags=ADMIN_TAGS)
def list_accounts(
    principal: Principal = Depends(requires(Permission.ACCOUNTS_READ)),
    db: Database = Depends(database),
    cursor: Cursor = None,
    limit: Limit = 50,
):
    """The institution's accounts, in pages, with their personal fields decrypted and their roles."""
    with tenant_scope(db, principal) as session:
        after = decode_cursor(cursor) if cursor is not None else None
        page, more = accounts.list_accounts(session, principal, after=after, limit=limit)
        return Page[AccountOut](
            items=_accounts_out(session, page),
            next_cursor=encode_cursor(page[-1].id) if more else None,
        )


@router.get("/accounts/{account_id}", response_model=AccountOut, tags=ADMIN_TAGS, responses=responses(404))
def read_account(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_READ)),
    db: Database = Depends(database),
):
    with tenant_scope(db, principal) as session:
        return _one_out(session, accounts.view_account(session, principal, account_id))


@router.post("/accounts/{account_id}/disable", response_model=AccountOut, tags=ADMIN_TAGS, responses=responses(404))
def disable_account(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """The account can no longer sign in, its sessions end at once, and its outstanding links stop working."""
    with tenant_scope(db, principal) as session:
        return _one_out(session, accounts.disable_account(session, principal, account_id))


@router.post("/accounts/{account_id}/enable", response_model=AccountOut, tags=ADMIN_TAGS, responses=responses(404))
def enable_account(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """Active again if it has a password, invited again otherwise (then re-send its invitation)."""
    with tenant_scope(db, principal) as session:
        return _one_out(session, accounts.enable_account(session, principal, account_id))


@router.delete("/accounts/{account_id}", status_code=204, tags=ADMIN_TAGS, responses=responses(404))
def delete_account(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """Delete the account and destroy its key: its personal fields are unreadable in every backup too."""
    with tenant_scope(db, principal) as session:
        accounts.delete_account(session, principal, account_id)
    return Response(status_code=204)


@router.post(
    "/accounts/{account_id}/invitation",
    status_code=202,
    response_model=LinkSent,
    tags=ADMIN_TAGS,
    responses=responses(404, 409),
)
def resend_invitation(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """Mail an invited account a new invitation link (the earlier one works until either is used)."""
    with tenant_scope(db, principal) as session:
        link = links.send_invitation(session, db.master, principal, account_id)
        return LinkSent(expires_at=link.expires_at)


@router.post(
    "/accounts/{account_id}/password-reset",
    status_code=202,
    response_model=LinkSent,
    tags=ADMIN_TAGS,
    responses=responses(404, 409),
)
def send_password_reset(
    account_id: UUID,
    principal: Principal = Depends(requires(Permission.ACCOUNTS_MANAGE)),
    db: Database = Depends(database),
):
    """Mail the holder a reset link (valid 1 hour). The administrator never sees the link or a password."""
    with tenant_scope(db, principal) as session:
        link = links.send_reset(session, db.master, principal, account_id)
        return LinkSent(expires_at=link.expires_at)


# --- link holders, before authentication ---------------------------------------------------


def _password_refused(request: Request, refused: PasswordRejected) -> JSONResponse:
    # The rule goes in `errors` too, so a form can point at the password field and say which rule.
    return problem(
        refused.status,
        refused.slug,
        refused.title,
        refused.detail,
        request,
        [FieldError(field="password", message=refused.rule.value)],
    )


@router.post("/auth/accept-invitation", status_code=204, tags=LINK_TAGS, responses=responses(401, 403))
def accept_invitation(body: AcceptInvitationIn, request: Request, db: Database = Depends(database)):
    """Choose the first password (under the account's role-based policy); the account becomes active."""
    try:
        links.accept_invitation(db, body.token, body.password)
    except PasswordRejected as refused:
        return _password_refused(request, refused)
    return Response(status_code=204)


@router.post(
    "/auth/password-reset", status_code=202, response_model=ResetRequested, tags=LINK_TAGS, responses=responses(429)
)
def request_password_reset(body: ResetRequestIn, request: Request, db: Database = Depends(database)):
    """Ask for a reset link. The answer is the same whether or not the account exists."""
    try:
        links.request_reset(db, body.institution, body.username, source_address(request))
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    return RESET_REQUESTED


@router.post("/auth/reset-password", status_code=204, tags=LINK_TAGS, responses=responses(401, 403))
def reset_password(body: ResetPasswordIn, request: Request, db: Database = Depends(database)):
    """Choose a new password from a reset link: every session of the account ends, and the lock is lifted."""
    try:
        links.reset_with_link(db, body.token, body.password)
    except PasswordRejected as refused:
        return _password_refused(request, refused)
    return Response(status_code=204)
