"""Audit-coverage recipes of the pages (web/ and every area's pages.py): a page that reads or changes data
leaves the same event as the API route calling the same service (run by tests/invariants/test_audit_coverage.py).
A page's form is sent as a browser sends it: its CSRF token read from the page first."""

from __future__ import annotations

import re

import pyotp
from fastapi.testclient import TestClient

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.identity import links
from tests.invariants.audit_coverage import NEW_PASSWORD, OPERATOR_PASSWORD, PASSWORD, Call, quiet_page, route

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def page_token(client: TestClient, path: str) -> str:
    """The CSRF token of the form on `path`, as this browser would read it."""
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    return TOKEN.search(page.text).group(1)


def form(client: TestClient, url: str, expect, chain, fields: dict, *, page: str | None = None) -> Call:
    data = {"csrf_token": page_token(client, page or url), **fields}
    return Call(client, "POST", url, expect, chain, data=data)


# Open pages that only show a form or text, or send the reader on.
quiet_page("/", "the start page: links, and on a demo database the demo's sign-ins; no one's data")
quiet_page("/signin", "the sign-in form")
quiet_page("/signin/second-factor", "the second-factor form")
quiet_page("/signin/done", "sends a signed-in reader to their portal or console by the kind of their account")
quiet_page("/signin/forgot", "the form asking for a reset link")
quiet_page("/signin/sso", "a form, then a redirect to the SAML sign-in route, which records its own event")
quiet_page("/reset-password", "the new-password form a reset link opens")
quiet_page("/accept-invitation", "the first-password form an invitation link opens")
quiet_page("/operator/signin", "the operators' sign-in form")
quiet_page("/operator/signin/second-factor", "the operators' second-factor form")
quiet_page("/operator/enrol", "the form an operator's enrolment link opens")


@route("POST", "/signin")
def _(w):
    w.account("lena")
    fields = {"institution": w.tenant.slug, "username": "lena", "password": PASSWORD}
    return form(w.browser(), "/signin", Action.SIGN_IN_SUCCEEDED, w.tenant.id, fields)


@route("POST", "/signin/second-factor")
def _(w):
    secret = pyotp.random_base32()
    w.account("lena", totp=secret)
    client = w.browser()
    signed = form(
        client, "/signin", None, None, {"institution": w.tenant.slug, "username": "lena", "password": PASSWORD}
    )
    assert signed.send().status_code == 303
    return form(client, "/signin/second-factor", Action.MFA_PASSED, w.tenant.id, {"code": pyotp.TOTP(secret).now()})


@route("POST", "/signout")
def _(w):
    return form(w.signed_in("lena"), "/signout", Action.SIGNED_OUT, w.tenant.id, {}, page="/")


@route("POST", "/signin/forgot")
def _(w):
    w.account("lena")
    fields = {"institution": w.tenant.slug, "username": "lena"}
    return form(w.browser(), "/signin/forgot", Action.PASSWORD_RESET_REQUESTED, w.tenant.id, fields)


@route("POST", "/reset-password")
def _(w):
    token = w.link(links.LinkPurpose.RESET, w.account("lena"))
    fields = {"token": token, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    return form(w.browser(), "/reset-password", Action.PASSWORD_RESET, w.tenant.id, fields)


@route("POST", "/accept-invitation")
def _(w):
    token = w.link(links.LinkPurpose.INVITE, w.account("nova", active=False))
    fields = {"token": token, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    return form(w.browser(), "/accept-invitation", Action.ACCOUNT_ACTIVATED, w.tenant.id, fields)


@route("POST", "/operator/signin")
def _(w):
    w.operator_enrolled()
    fields = {"username": "olga.ops", "password": OPERATOR_PASSWORD}
    return form(w.browser(), "/operator/signin", Action.SIGN_IN_SUCCEEDED, PLATFORM_CHAIN, fields)


@route("POST", "/operator/signin/second-factor")
def _(w):
    totp = w.operator_enrolled()
    client = w.browser()
    signed = form(client, "/operator/signin", None, None, {"username": "olga.ops", "password": OPERATOR_PASSWORD})
    assert signed.send().status_code == 303
    url = "/operator/signin/second-factor"
    return form(client, url, Action.MFA_PASSED, PLATFORM_CHAIN, {"code": totp.now()})


@route("POST", "/operator/signout")
def _(w):
    return form(w.operator_signed_in(), "/operator/signout", Action.SIGNED_OUT, PLATFORM_CHAIN, {}, page="/")


@route("POST", "/operator/enrol")
def _(w):
    # Step one (the link's token): a new authenticator secret, as POST /api/v1/operator/auth/enrolment.
    fields = {"token": w.operator_link()}
    return form(w.browser(), "/operator/enrol", Action.MFA_ENROLMENT_STARTED, PLATFORM_CHAIN, fields)


# The consoles' pages register theirs too (web/consoles and each area's pages.py).
from tests.web import console_recipes  # noqa: E402, F401
