"""The page an administrator's second-factor enrolment link opens (after a reset of the holder's factors).

The same service as POST /api/v1/auth/mfa-enrolment and /confirm (identity/enrolment/links.py): the link
and the account's password give a new authenticator secret and a session that can do one thing, confirm
the app's code; the code gives ten recovery codes, shown once, and a normal session. Open (the link and
the password are the authority), throttled and audited as the API's.
"""

from __future__ import annotations

from fastapi import Request

from bookwarden.core.errors import BookwardenError
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.sessions import COOKIE_NAME
from bookwarden.web import session as web_session
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import source_address
from bookwarden.web.templates import render, render_refusal

router = PageRouter()
PAGE = "account/enrol_second_factor.html"
TITLE = {"title": "Set up your second factor"}


@router.get("/enrol-second-factor")
def enrol_form(request: Request):
    return render(request, PAGE, begun=None, recovery_codes=None, **TITLE)


@router.post("/enrol-second-factor")
def enrol(request: Request):
    """Step one: the link's token and the password; step two (a `code`): the app's current code."""
    fields = form(request)
    db = request.app.state.db
    if "code" in fields:
        try:
            enrolled = enrolment_links.confirm(db, request.cookies.get(COOKIE_NAME, ""), fields["code"].strip()[:64])
        except BookwardenError as refused:
            return render_refusal(request, PAGE, refused, begun=None, recovery_codes=None, **TITLE)
        web_session.session_changed(request, enrolled.session_token)
        response = render(request, PAGE, begun=None, recovery_codes=enrolled.recovery_codes, **TITLE)
        web_session.set_session_cookie(request, response, enrolled.session_token)
        return response
    try:
        begun = enrolment_links.begin(
            db, fields.get("token", "").strip()[:1024], fields.get("password", "")[:1024], source_address(request),
            request.headers.get("user-agent", ""),
        )  # fmt: skip
    except BookwardenError as refused:
        return render_refusal(request, PAGE, refused, begun=None, recovery_codes=None, **TITLE)
    web_session.session_changed(request, begun.session_token)  # the code's form comes back with this cookie
    response = render(request, PAGE, begun=begun, recovery_codes=None, **TITLE)
    web_session.set_session_cookie(request, response, begun.session_token)
    return response
