"""Audit-coverage recipes of the pages (web/ and every area's pages.py): a page that reads or changes data
leaves the same event as the API route calling the same service (run by tests/invariants/test_audit_coverage.py).
A page's form is sent as a browser sends it: its CSRF token read from the page first."""

from __future__ import annotations

import re

import pyotp
from fastapi.testclient import TestClient

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.identity import links
from bookwarden.library import records as library
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


# -- the patron portal ---------------------------------------------------------------------------------

quiet_page("/register", "the registration form, with the privacy notice in force (read, not recorded: public text)")
quiet_page("/confirm-email", "the form a registration's confirmation link opens")


def _patron_browser(w) -> TestClient:
    """A browser signed in on the sign-in page as a new patron with a record, loans and a post."""
    import uuid

    from bookwarden.db.session import tenant_session
    from bookwarden.privacy.notices import service as notices
    from tests.e2e.people import PASSWORD as PATRON_PASSWORD
    from tests.e2e.people import patron, publish_notice

    username = f"reader-{uuid.uuid4().hex[:6]}"
    patron(w.db, w.tenant.id, username)
    with tenant_session(w.db, w.tenant.id) as session:
        published = notices.in_force(session) is not None
    if not published:
        publish_notice(w.db, w.tenant.id)
    client = w.browser()
    fields = {"institution": w.tenant.slug, "username": username, "password": PATRON_PASSWORD}
    assert form(client, "/signin", None, None, fields).send().status_code == 303
    return client


def _get(w, path: str, expect) -> Call:
    return Call(_patron_browser(w), "GET", path, expect, w.tenant.id)


route("GET", "/portal")(lambda w: _get(w, "/portal", Action.PATRON_VIEWED))
route("GET", "/portal/correct")(lambda w: _get(w, "/portal/correct", Action.PATRON_VIEWED))
route("GET", "/portal/posts")(lambda w: _get(w, "/portal/posts", library.POSTS.action("listed")))
route("GET", "/portal/requests")(lambda w: _get(w, "/portal/requests", Action.PRIVACY_REQUEST_LISTED))
route("GET", "/portal/complaints")(lambda w: _get(w, "/portal/complaints", Action.COMPLAINT_LISTED))
route("GET", "/portal/preferences")(lambda w: _get(w, "/portal/preferences", Action.PREFERENCES_VIEWED))
route("GET", "/portal/consents")(lambda w: _get(w, "/portal/consents", Action.CONSENTS_VIEWED))
route("GET", "/portal/cookies")(lambda w: _get(w, "/portal/cookies", Action.COOKIE_CHOICE_VIEWED))


@route("POST", "/portal/posts/{post_id}/delete")
def _(w):
    client = _patron_browser(w)
    page = client.get("/portal/posts")
    post_id = re.search(r'action="/portal/posts/([0-9a-f-]+)/delete"', page.text).group(1)
    url = f"/portal/posts/{post_id}/delete"
    return form(client, url, library.POSTS.action("deleted"), w.tenant.id, {}, page="/portal/posts")


@route("POST", "/portal/requests")
def _(w):
    return form(
        _patron_browser(w), "/portal/requests", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, {"kind": "access"}
    )


@route("POST", "/portal/correct")
def _(w):
    fields = {"name": "Ada Corrected"}
    return form(_patron_browser(w), "/portal/correct", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, fields)


@route("POST", "/portal/complaints")
def _(w):
    fields = {"subject": "My loans were shown to another patron", "body": "At the desk."}
    return form(_patron_browser(w), "/portal/complaints", Action.COMPLAINT_REGISTERED, w.tenant.id, fields)


@route("POST", "/portal/preferences")
def _(w):
    fields = {"subscribed": "email:newsletters"}
    return form(_patron_browser(w), "/portal/preferences", Action.PREFERENCES_CHANGED, w.tenant.id, fields)


@route("POST", "/portal/cookie-choice")
def _(w):
    fields = {"choice": "necessary", "back": "/portal"}
    client = _patron_browser(w)
    return form(client, "/portal/cookie-choice", Action.COOKIE_CHOICE_RECORDED, w.tenant.id, fields, page="/portal")


@route("GET", "/privacy-notice/{tenant_slug}")
def _(w):
    from tests.e2e.people import publish_notice

    publish_notice(w.db, w.tenant.id)
    return Call(w.browser(), "GET", f"/privacy-notice/{w.tenant.slug}", Action.PRIVACY_NOTICE_VIEWED, w.tenant.id)


@route("POST", "/register")
def _(w):
    opened = w.admin.put("/api/v1/self-registration/settings", json={"enabled": True, "timezone": "UTC"})
    assert opened.status_code == 200, opened.text
    fields = {
        "institution": w.tenant.slug,
        "name": "Sam Reader",
        "email": "sam@example.org",
        "birth_date": "1990-05-01",
    }
    return form(w.browser(), "/register", Action.SELF_REGISTERED, w.tenant.id, fields)


@route("POST", "/confirm-email")
def _(w):
    import uuid
    from datetime import date

    from sqlalchemy import select

    from bookwarden.db.session import tenant_session
    from bookwarden.notify.models import OutboxMessage
    from bookwarden.notify.service import open_mail
    from bookwarden.privacy.registration import service as self_registration
    from tests.helpers import fresh_address

    opened = w.admin.put("/api/v1/self-registration/settings", json={"enabled": True, "timezone": "UTC"})
    assert opened.status_code == 200, opened.text
    email = f"sam.{uuid.uuid4().hex[:8]}@example.org"
    self_registration.register(
        w.db, w.tenant.slug, fresh_address(), name="Sam", email=email, birth_date=date(1990, 5, 1)
    )
    with tenant_session(w.db, w.tenant.id) as session:
        [message] = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(1)).all()
        [token] = re.findall(r"#token=(\S+)", open_mail(session, message).body)
    return form(w.browser(), "/confirm-email", Action.SELF_REGISTRATION_CONFIRMED, w.tenant.id, {"token": token})


quiet_page("/enrol-second-factor", "the form an administrator's second-factor enrolment link opens")


def enrolment_token(w, username: str) -> str:
    """The token of an administrator's second-factor enrolment link, mailed to a new account `username`."""
    from sqlalchemy import select

    from bookwarden.db.session import tenant_session
    from bookwarden.identity.enrolment import links as enrolment_links
    from bookwarden.notify.models import OutboxMessage
    from bookwarden.notify.service import open_mail

    account = w.account(username)
    with tenant_session(w.db, w.tenant.id) as session:
        enrolment_links.send_link(session, w.db.master, w.as_admin(), account.id)
    with tenant_session(w.db, w.tenant.id) as session:
        bodies = [open_mail(session, row).body for row in session.scalars(select(OutboxMessage))]
    return next(b for b in bodies if "#token=" in b).split("#token=", 1)[1].split()[0]


@route("POST", "/enrol-second-factor")
def _(w):
    fields = {"token": enrolment_token(w, "lena"), "password": PASSWORD}
    return form(w.browser(), "/enrol-second-factor", Action.MFA_ENROLMENT_STARTED, w.tenant.id, fields)


# The consoles' pages register theirs too (web/consoles and each area's pages.py).
from tests.web import (  # noqa: E402, F401
    area_recipes,
    console_action_recipes,
    console_recipes,
    operator_page_recipes,
)
