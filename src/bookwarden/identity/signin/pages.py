"""Sign-in pages for an institution's staff and patrons: password, then the second factor.

The pages call the same services as the API (POST /api/v1/auth/login, /auth/mfa): the same
throttles, the same single answer for every refused password, the same audit events, the same
session in the same cookie. A refusal is shown on the form with the service's own words, and the
status the API would answer (401, 403, 429 with Retry-After).

After the password, a session still waiting for its second factor goes to /signin/second-factor
(code from an authenticator app, a recovery code, or a security key through the API's WebAuthn
ceremony: static/webauthn.js). Then the reader goes where they were going (`next`), or to the
patron portal or the institution console by the kind of their account.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError, Unauthenticated
from bookwarden.db.session import tenant_session
from bookwarden.identity.models import Account, AccountKind
from bookwarden.identity.sessions import COOKIE_NAME
from bookwarden.identity.signin import service as signin
from bookwarden.web import session as web_session
from bookwarden.web.errors import local_path
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import source_address
from bookwarden.web.templates import render, render_refusal

router = PageRouter()
# What the sign-in page says when another page sent the reader here (a flag in the query, never text).
NOTICES = {
    "signed_out": "You are signed out.",
    "reset": "Your new password is saved, and every earlier session of your account has ended. Sign in with it.",
    "welcome": "Your password is saved and your account is active. Sign in with it.",
}
PORTAL, CONSOLE = "/portal", "/console"


@router.get("/signin")
def sign_in_form(request: Request, next: str | None = None, institution: str = ""):
    return render(
        request,
        "signin/password.html",
        title="Sign in",
        next=local_path(next, ""),
        institution=institution,
        notice=" ".join(NOTICES[flag] for flag in NOTICES if flag in request.query_params),
    )


@router.post("/signin")
def sign_in(request: Request):
    fields = form(request)
    institution, username = fields.get("institution", "").strip(), fields.get("username", "").strip()
    next_path = local_path(fields.get("next"), "")
    context = {"title": "Sign in", "next": next_path, "institution": institution, "username": username}
    if not (institution and username and fields.get("password")):
        return render(
            request, "signin/password.html", status_code=422,
            error="type your institution, username and password", **context,
        )  # fmt: skip
    attempt = signin.SignInAttempt(
        institution=institution,
        username=username,
        password=fields.get("password", "")[:1024],
        source_address=source_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    try:
        signed_in = signin.sign_in(request.app.state.db, attempt)
    except BookwardenError as refused:  # invalid credentials, too many attempts, enrolment required
        return render_refusal(request, "signin/password.html", refused, **context)
    previous = request.cookies.get(COOKIE_NAME)
    if previous:
        signin.sign_out(request.app.state.db, previous)  # replaced, not left alive behind the new cookie
    if signed_in.second_factor_pending:
        target = "/signin/second-factor" + (f"?next={next_path}" if next_path else "")
    else:
        target = next_path or _home(request, signed_in)
    response = RedirectResponse(target, status_code=303)
    web_session.set_session_cookie(request, response, signed_in.session_token)
    return response


@router.get("/signin/second-factor")
def second_factor_form(request: Request, next: str | None = None):
    if not request.cookies.get(COOKIE_NAME):
        return RedirectResponse("/signin", status_code=303)
    return render(request, "signin/second_factor.html", title="Second factor", next=local_path(next, ""))


@router.post("/signin/second-factor")
def second_factor(request: Request):
    fields = form(request)
    next_path = local_path(fields.get("next"), "")
    cookie = request.cookies.get(COOKIE_NAME)
    context = {"title": "Second factor", "next": next_path}
    if not cookie:
        return RedirectResponse("/signin", status_code=303)
    code = fields.get("code", "").strip()[:64]
    if not code:
        return render(request, "signin/second_factor.html", status_code=422, error="type a code", **context)
    try:
        done = signin.complete_second_factor(request.app.state.db, cookie, code, source_address(request))
    except Unauthenticated:
        # The pending session ended (too many wrong codes, or its five minutes passed): start again.
        return render(
            request, "signin/password.html", status_code=401, title="Sign in", next=next_path, institution="",
            username="", error="your sign-in was not completed in time or had too many wrong codes; sign in again",
        )  # fmt: skip
    except BookwardenError as refused:
        return render_refusal(request, "signin/second_factor.html", refused, **context)
    response = RedirectResponse(next_path or _home(request, done), status_code=303)
    web_session.set_session_cookie(request, response, done.session_token)  # the session's new value
    return response


@router.get("/signin/done")
def signed_in_home(request: Request, next: str | None = None):
    """Where a security key's sign-in (completed by the API in the page's script) lands."""
    principal = web_session.current(request)
    if principal is None:
        return RedirectResponse("/signin", status_code=303)
    target = local_path(next, "") or _kind_home(request, principal.tenant_id, principal.id)
    return RedirectResponse(target, status_code=303)


@router.post("/signout")
def sign_out(request: Request):
    signin.sign_out(request.app.state.db, request.cookies.get(COOKIE_NAME))
    response = RedirectResponse("/signin?signed_out", status_code=303)
    web_session.forget_session_cookie(request, response)
    return response


def _home(request: Request, signed_in: signin.SignedIn) -> str:
    return _kind_home(request, signed_in.tenant_id, signed_in.account_id)


def _kind_home(request: Request, tenant_id, account_id) -> str:
    with tenant_session(request.app.state.db, tenant_id) as session:
        account = session.get(Account, (tenant_id, account_id))
        return PORTAL if account is not None and account.kind is AccountKind.PATRON else CONSOLE
