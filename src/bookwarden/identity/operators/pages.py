"""Operators' sign-in pages: password, then always a second factor; sign-out; enrolment from the link.

The same service as POST /api/v1/operator/auth/login, /mfa and /enrolment (identity/operators/signin.py,
service.py): the same throttles, answers and audit events, the same session in `bw_operator_session`
(SameSite=Strict). All open (before authentication, or on the caller's own session only).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError, Unauthenticated
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.identity.operators import signin as operator_signin
from bookwarden.web import session as web_session
from bookwarden.web.errors import local_path
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import source_address
from bookwarden.web.templates import render, render_refusal

router = PageRouter()
CONSOLE = "/operator"
SIGN_IN = {"title": "Operator sign-in", "action": "/operator/signin", "operator": True, "institution": ""}
SECOND = {"title": "Operator second factor", "action": "/operator/signin/second-factor", "operator": True}


@router.get("/operator/signin")
def sign_in_form(request: Request, next: str | None = None):
    return render(request, "signin/password.html", next=local_path(next, ""), **SIGN_IN)


@router.post("/operator/signin")
def sign_in(request: Request):
    fields = form(request)
    username, next_path = fields.get("username", "").strip(), local_path(fields.get("next"), "")
    context = {**SIGN_IN, "next": next_path, "username": username}
    if not (username and fields.get("password")):
        return render(
            request, "signin/password.html", status_code=422, error="type your username and password", **context
        )
    db = request.app.state.db
    try:
        signed_in = operator_signin.sign_in(
            db,
            username,
            fields.get("password", "")[:1024],
            source_address(request),
            request.headers.get("user-agent", ""),
        )
    except BookwardenError as refused:
        return render_refusal(request, "signin/password.html", refused, **context)
    previous = request.cookies.get(web_session.OPERATOR_COOKIE)
    if previous:
        operator_signin.sign_out(db, previous)
    target = "/operator/signin/second-factor" + (f"?next={next_path}" if next_path else "")
    response = RedirectResponse(target, status_code=303)
    web_session.set_session_cookie(request, response, signed_in.session_token, operator=True)
    return response


@router.get("/operator/signin/second-factor")
def second_factor_form(request: Request, next: str | None = None):
    if not request.cookies.get(web_session.OPERATOR_COOKIE):
        return RedirectResponse("/operator/signin", status_code=303)
    return render(request, "signin/second_factor.html", next=local_path(next, ""), **SECOND)


@router.post("/operator/signin/second-factor")
def second_factor(request: Request):
    fields = form(request)
    next_path = local_path(fields.get("next"), "")
    cookie = request.cookies.get(web_session.OPERATOR_COOKIE)
    if not cookie:
        return RedirectResponse("/operator/signin", status_code=303)
    code = fields.get("code", "").strip()[:64]
    if not code:
        return render(
            request, "signin/second_factor.html", status_code=422, error="type a code", next=next_path, **SECOND
        )
    try:
        done = operator_signin.complete_second_factor(request.app.state.db, cookie, code, source_address(request))
    except Unauthenticated:
        error = "your sign-in was not completed in time or had too many wrong codes; sign in again"
        return render(request, "signin/password.html", status_code=401, next=next_path, error=error, **SIGN_IN)
    except BookwardenError as refused:
        return render_refusal(request, "signin/second_factor.html", refused, next=next_path, **SECOND)
    response = RedirectResponse(next_path or CONSOLE, status_code=303)
    web_session.set_session_cookie(request, response, done.session_token, operator=True)
    return response


@router.post("/operator/signout")
def sign_out(request: Request):
    operator_signin.sign_out(request.app.state.db, request.cookies.get(web_session.OPERATOR_COOKIE))
    response = RedirectResponse("/operator/signin", status_code=303)
    web_session.forget_session_cookie(request, response, operator=True)
    return response


@router.get("/operator/enrol")
def enrol_form(request: Request):
    """The enrolment link from `bookwarden operator create` lands here (its token in the fragment)."""
    return render(request, "operator/enrol.html", title="Operator enrolment", started=None)


@router.post("/operator/enrol")
def enrol(request: Request):
    """Step one: the link's token gives a new authenticator secret; step two: password and the app's code."""
    fields = form(request)
    token = fields.get("token", "").strip()[:1024]
    db = request.app.state.db
    if "code" not in fields:
        try:
            started = operator_accounts.start_enrolment(db, token)
        except BookwardenError as refused:
            return render_refusal(request, "operator/enrol.html", refused, title="Operator enrolment", started=None)
        return render(request, "operator/enrol.html", title="Operator enrolment", started=started, token=token)
    try:
        enrolled = operator_accounts.complete_enrolment(
            db, token, fields.get("password", "")[:1024], fields.get("code", "").strip()[:64]
        )
    except BookwardenError as refused:
        return render_refusal(request, "operator/enrol.html", refused, title="Operator enrolment", started=None)
    return render(request, "operator/enrolled.html", title="Enrolled", recovery_codes=enrolled.recovery_codes)
