"""Pages of one-time links and their requests: forgotten password, reset, invitation; institutional sign-on.

Each calls the service the API's link routes call (identity/links.py: POST /api/v1/auth/password-reset,
/auth/reset-password, /auth/accept-invitation): the same throttles, the same single answer whether or
not an account exists, the same password policy and the same audit events. A link's token travels in its
fragment (#token=...), which no browser sends to a server: static/link-token.js copies it into the form
(without JavaScript it can be pasted). All open: a link holder is not signed in.

The institution console's accounts and roles (/console/accounts) are here too: the services the API's
account and role routes call, as the person signed in. A refusal (segregation of duties, self-assignment,
a role granted twice) is the service's own, shown on the error page with its words; an administrative role
is asked for, and the page says it waits for a second person.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.access.approvals.models import ApprovalRequest
from bookwarden.access.routes import AssignmentIn
from bookwarden.core.errors import BookwardenError
from bookwarden.core.pagination import decode_cursor, encode_cursor
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.identity import links
from bookwarden.identity import roles as access
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.accounts.routes import AccountIn, Cursor, _accounts_out
from bookwarden.identity.models import AccountKind
from bookwarden.tenancy.service import SLUG
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, source_address, tenant_scope
from bookwarden.web.templates import render, render_refusal

router = PageRouter()
FORGOT = {"title": "Forgot your password?"}


@router.get("/signin/forgot")
def forgot_form(request: Request):
    return render(request, "account/forgot.html", sent=None, institution="", username="", **FORGOT)


@router.post("/signin/forgot")
def forgot(request: Request):
    fields = form(request)
    institution, username = fields.get("institution", "").strip()[:63], fields.get("username", "").strip()[:254]
    context = {"institution": institution, "username": username, "sent": None, **FORGOT}
    if not (institution and username):
        return render(
            request, "account/forgot.html", status_code=422, error="type your institution and username", **context
        )
    try:
        links.request_reset(request.app.state.db, institution, username, source_address(request))
    except BookwardenError as refused:
        return render_refusal(request, "account/forgot.html", refused, **context)
    # The same answer whether or not the account exists, as the API gives.
    return render(request, "account/forgot.html", **{**context, "sent": links.RESET_REQUESTED})


@router.get("/reset-password")
def reset_form(request: Request):
    """A reset link lands here (identity/links.py PAGE)."""
    return render(request, "account/new_password.html", title="Choose a new password", action="/reset-password")


@router.post("/reset-password")
def reset(request: Request):
    return _new_password(request, links.reset_with_link, "Choose a new password", "/reset-password", "reset")


@router.get("/accept-invitation")
def invitation_form(request: Request):
    """An invitation link lands here."""
    return render(request, "account/new_password.html", title="Accept your invitation", action="/accept-invitation")


@router.post("/accept-invitation")
def accept(request: Request):
    return _new_password(request, links.accept_invitation, "Accept your invitation", "/accept-invitation", "welcome")


def _new_password(request: Request, use_link, title: str, action: str, done: str):
    fields = form(request)
    context = {"title": title, "action": action, "token": fields.get("token", "")[:1024]}
    if fields.get("password", "") != fields.get("repeat", ""):
        return render(
            request, "account/new_password.html", status_code=422, error="the two passwords differ", **context
        )
    try:
        use_link(request.app.state.db, context["token"], fields.get("password", "")[:1024])
    except BookwardenError as refused:  # an expired or used link, or a password the policy refuses
        return render_refusal(request, "account/new_password.html", refused, **context)
    return RedirectResponse(f"/signin?{done}=1", status_code=303)


@router.get("/signin/sso")
def single_sign_on(request: Request, institution: str = ""):
    """Sign in through the institution's identity provider: on to the API's SAML sign-in (identity/saml)."""
    slug = institution.strip().lower()
    if slug and SLUG.match(slug):
        # Back through /signin/done, which sends a patron to the portal and staff to the console.
        return RedirectResponse(f"/api/v1/sso/saml/{slug}/login?next=/signin/done", status_code=303)
    error = "type your institution's short name" if institution else ""
    return render(request, "account/sso.html", status_code=422 if error else 200, title="Single sign-on", error=error)


# -- the institution console: accounts and roles ----------------------------------------------------------
READ = Depends(requires(Permission.ACCOUNTS_READ))
MANAGE = Depends(requires(Permission.ACCOUNTS_MANAGE))
ASSIGN = Depends(requires(Permission.ROLES_ASSIGN))
HOME = "/console/accounts"
entry(
    Console.INSTITUTION,
    "People and access",
    "Accounts and roles",
    HOME,
    Permission.ACCOUNTS_READ,
    "invite staff and patrons, grant and revoke roles, disable accounts",
)

DONE = {
    "created": "Account created; the invitation to set a password is on its way to its address.",
    "granted": "Role granted. The security contacts are told.",
    "asked": "This role carries administrative permissions: it is asked, and granted when another "
    "administrator approves it (Approvals).",
    "revoked": "Role revoked. The security contacts are told.",
    "disabled": "Account disabled: its sessions ended and its tokens are revoked.",
    "enabled": "Account enabled.",
    "reset": "A password reset link is on its way to the holder (valid one hour). You never see it.",
}


def _db(request: Request):
    return request.app.state.db


@router.get(HOME)
def list_accounts(
    request: Request,
    principal: Principal = READ,
    cursor: Cursor = None,
    done_: Annotated[str | None, Query(alias="done", max_length=20)] = None,
):
    """The institution's accounts, 50 at a time, with their roles; the invitation form for account managers."""
    with tenant_scope(request, principal) as session:
        after = decode_cursor(cursor) if cursor is not None else None
        found, more = accounts.list_accounts(session, principal, after=after, limit=50)
        rows = _accounts_out(session, found)
    return page(
        request,
        Console.INSTITUTION,
        "console/accounts.html",
        title="Accounts and roles",
        rows=rows,
        next_cursor=encode_cursor(found[-1].id) if more else None,
        kinds=list(AccountKind),
        can_manage=Permission.ACCOUNTS_MANAGE in principal.permissions,
        done=done(done_, DONE),
    )


@router.post(HOME)
def create_account(request: Request, principal: Principal = MANAGE):
    """Invite an account: the same two calls as POST /api/v1/accounts (create, then mail the invitation)."""
    body = read_form(request, AccountIn)
    db = _db(request)
    with tenant_scope(request, principal) as session:
        account = accounts.create_account(
            session, principal, kind=body.kind, username=body.username, email=body.email, display_name=body.display_name
        )
        links.send_invitation(session, db.master, principal, account.id)
    return RedirectResponse(f"{HOME}/{account.id}?done=created", status_code=303)


@router.get(HOME + "/{account_id}")
def read_account(
    request: Request,
    account_id: UUID,
    principal: Principal = READ,
    done_: Annotated[str | None, Query(alias="done", max_length=20)] = None,
):
    """One account: its roles, and what the reader may do to it."""
    held = principal.permissions
    with tenant_scope(request, principal) as session:
        account = _accounts_out(session, [accounts.view_account(session, principal, account_id)])[0]
        roles = []
        if Permission.ROLES_ASSIGN in held and Permission.ROLES_READ in held:
            roles = [name for name, _, _, _ in access.list_roles(session, principal) if name not in account.roles]
    return page(
        request,
        Console.INSTITUTION,
        "console/account.html",
        title=account.username or "Erased account",
        account=account,
        grantable=roles,
        can_assign=Permission.ROLES_ASSIGN in held,
        can_manage=Permission.ACCOUNTS_MANAGE in held,
        done=done(done_, DONE),
    )


@router.post(HOME + "/{account_id}/roles")
def grant_role(request: Request, account_id: UUID, principal: Principal = ASSIGN):
    """Grant a role, or ask for it when it carries administrative permissions (as the API's 202)."""
    body = read_form(request, AssignmentIn)
    with tenant_scope(request, principal) as session:
        granted = access.grant_or_ask(session, principal, account_id, body.role)
    outcome = "asked" if isinstance(granted, ApprovalRequest) else "granted"
    return RedirectResponse(f"{HOME}/{account_id}?done={outcome}", status_code=303)


@router.post(HOME + "/{account_id}/roles/{role}/revoke")
def revoke_role(request: Request, account_id: UUID, role: str, principal: Principal = ASSIGN):
    with tenant_scope(request, principal) as session:
        access.revoke_role(session, principal, account_id, AssignmentIn(role=role).role)
    return RedirectResponse(f"{HOME}/{account_id}?done=revoked", status_code=303)


@router.post(HOME + "/{account_id}/disable")
def disable_account(request: Request, account_id: UUID, principal: Principal = MANAGE):
    with tenant_scope(request, principal) as session:
        accounts.disable_account(session, principal, account_id)
    return RedirectResponse(f"{HOME}/{account_id}?done=disabled", status_code=303)


@router.post(HOME + "/{account_id}/enable")
def enable_account(request: Request, account_id: UUID, principal: Principal = MANAGE):
    with tenant_scope(request, principal) as session:
        accounts.enable_account(session, principal, account_id)
    return RedirectResponse(f"{HOME}/{account_id}?done=enabled", status_code=303)


@router.post(HOME + "/{account_id}/password-reset")
def send_password_reset(request: Request, account_id: UUID, principal: Principal = MANAGE):
    db = _db(request)
    with tenant_scope(request, principal) as session:
        links.send_reset(session, db.master, principal, account_id)
    return RedirectResponse(f"{HOME}/{account_id}?done=reset", status_code=303)
