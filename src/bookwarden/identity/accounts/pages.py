"""Pages of one-time links and their requests: forgotten password, reset, invitation; institutional sign-on.

Each calls the service the API's link routes call (identity/links.py: POST /api/v1/auth/password-reset,
/auth/reset-password, /auth/accept-invitation): the same throttles, the same single answer whether or
not an account exists, the same password policy and the same audit events. A link's token travels in its
fragment (#token=...), which no browser sends to a server: static/link-token.js copies it into the form
(without JavaScript it can be pasted). All open: a link holder is not signed in.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError
from bookwarden.identity import links
from bookwarden.tenancy.service import SLUG
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import source_address
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
