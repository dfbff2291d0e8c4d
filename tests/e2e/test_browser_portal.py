"""In a real browser: a patron downloads their data and asks for its erasure; two privacy officers carry
it out on the institution console's request queue (the first approves, the second carries it out); the patron
cannot sign in any more. And a patron unsubscribes in one click.

The copy of her data is carried out over the JSON API (the pages are built on the same services)."""

from __future__ import annotations

import re
import zipfile
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from sqlalchemy import select

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.tokens import service as tokens
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent import unsubscribe
from bookwarden.privacy.consent.models import ConsentMethod
from bookwarden.privacy.consent.service import Channel, Choice, Topic
from bookwarden.privacy.requests.models import PrivacyRequest
from tests.e2e.people import PASSWORD, administrator, patron, publish_notice, slug_of, staff

REQUESTS = "/api/v1/privacy/requests"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _officer(site, tenant_id, name: str) -> httpx.Client:
    """A privacy officer's API client (a token of the officer's permissions)."""
    with tenant_session(site.db, tenant_id) as session:
        permissions = sorted(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
        token = tokens.issue_api_token(session, name, permissions, timedelta(hours=1))[1]
    return httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {token}"})


def _carry_out(first: httpx.Client, second: httpx.Client, kind: str) -> None:
    """The newest open request of `kind`: the first officer approves it, the second carries it out."""
    queue = first.get(REQUESTS).json()["items"]
    request_id = next(r["id"] for r in queue if r["kind"] == kind)
    assert first.post(f"{REQUESTS}/{request_id}/decision", json={"decision": "approve"}).status_code == 200
    assert second.post(f"{REQUESTS}/{request_id}/start").status_code == 200
    done = second.post(f"{REQUESTS}/{request_id}/complete")
    assert done.status_code == 200 and done.json()["state"] == "completed", done.text


def _mailed_link(db, tenant_id, pattern: str) -> str:
    with tenant_session(db, tenant_id) as session:
        messages = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at.desc())).all()
        for message in messages:
            found = re.search(pattern, open_mail(session, message).body)
            if found:
                return found.group(0)
    raise AssertionError(f"no mail holds {pattern}")


def _sign_in(page, site, slug: str, username: str) -> None:
    page.goto(f"{site.url}/signin")
    page.get_by_label("Institution").fill(slug)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _officer_page(chromium, site, slug: str, username: str, secret: str):
    """A privacy officer signed in to the console in a browser of their own: (context, page)."""
    context = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="en-GB")
    officer = context.new_page()
    officer.goto(f"{site.url}/signin")
    officer.get_by_label("Institution").fill(slug)
    officer.get_by_label("Username").fill(username)
    officer.get_by_label("Password").fill(PASSWORD)
    officer.get_by_role("button", name="Sign in").click()
    officer.wait_for_url(re.compile(r"/signin/second-factor"))
    officer.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    officer.get_by_role("button", name="Continue").click()
    officer.wait_for_url(re.compile(r"/console"))
    return context, officer


def _open_erasure(officer, site) -> None:
    """From the queue, the patron's erasure request."""
    officer.goto(f"{site.url}/console/privacy/requests")
    officer.get_by_role("link", name="erasure").click()
    officer.wait_for_url(re.compile(r"/console/privacy/requests/[0-9a-f-]+$"))


def test_a_patron_downloads_their_data_then_has_it_erased(site, committed_tenant, chromium, page, axe, shot, tmp_path):
    tenant_id = committed_tenant()
    slug = slug_of(site.db, tenant_id)
    publish_notice(site.db, tenant_id)
    patron(site.db, tenant_id, "ada", name="Ada Reader")
    first, second = _officer(site, tenant_id, "officer one"), _officer(site, tenant_id, "officer two")

    _sign_in(page, site, slug, "ada")
    page.wait_for_url(re.compile(r"/portal$"))
    assert "Ada Reader" in page.locator("main").inner_text()  # decrypted, for her
    assert page.locator("svg.chart rect.bar").count() == 12
    axe(page)
    shot(page, "my-data")

    # The cookie banner: strictly necessary only until she chooses.
    banner = page.get_by_role("region", name="Cookies")
    assert banner.is_visible()
    banner.get_by_role("button", name="Only strictly necessary").click()
    assert page.get_by_role("region", name="Cookies").count() == 0

    page.get_by_role("link", name="My requests").click()
    page.get_by_label("A copy of my data (a ZIP file to download)").check()
    page.get_by_role("button", name="Send my request").click()
    assert "Your request is received" in page.locator("main").inner_text()
    axe(page)
    shot(page, "access-asked")

    _carry_out(first, second, "access")
    link = _mailed_link(site.db, tenant_id, r"https?://\S+/api/v1/privacy/subject-exports/download/\S+")
    page.reload()
    assert "The download link was mailed to you" in page.locator("main").inner_text()
    with page.expect_download() as downloading:
        # The mailed link, opened in her browser (on this test's server).
        page.evaluate("url => { window.location.href = url }", f"{site.url}{urlsplit(link).path}")
    package = tmp_path / "package.zip"
    downloading.value.save_as(package)
    assert zipfile.is_zipfile(package)
    with zipfile.ZipFile(package) as archive:
        assert any("Ada Reader" in archive.read(name).decode(errors="ignore") for name in archive.namelist())

    page.goto(f"{site.url}/portal/requests")
    page.get_by_label("Erase my data and close my account").check()
    page.get_by_role("button", name="Send my request").click()
    assert "Once it is carried out you can no longer sign in" in page.locator("main").inner_text()
    shot(page, "erasure-asked")

    # Two privacy officers, each in a browser of their own, work it on the console's request queue.
    secrets = {name: pyotp.random_base32() for name in ("pia", "quinn")}
    for name, secret in secrets.items():
        staff(site.db, tenant_id, name, roles=[BuiltinRole.PRIVACY_OFFICER], totp=secret)
    context, officer = _officer_page(chromium, site, slug, "pia", secrets["pia"])
    try:
        _open_erasure(officer, site)
        axe(officer)
        shot(officer, "first-officer-opens-the-erasure")
        officer.get_by_role("button", name="Approve").click()
        officer.wait_for_url(re.compile(r"done=approve"))
        assert "approved" in officer.locator("main dl").inner_text()
        shot(officer, "first-officer-approved")
    finally:
        context.close()
    context, officer = _officer_page(chromium, site, slug, "quinn", secrets["quinn"])
    try:
        _open_erasure(officer, site)
        officer.get_by_role("button", name="Mark in progress").click()
        officer.wait_for_url(re.compile(r"done=start"))
        officer.once("dialog", lambda dialog: dialog.accept())  # "Carry this request out now?"
        officer.get_by_role("button", name="Carry out and close").click()
        officer.wait_for_url(re.compile(r"done=complete"))
        assert "completed" in officer.locator("main dl").inner_text()
        axe(officer)
        shot(officer, "second-officer-carried-it-out")
    finally:
        context.close()
    with tenant_session(site.db, tenant_id) as session:
        erasure = session.scalars(select(PrivacyRequest).where(PrivacyRequest.kind == "erasure")).one()
        assert erasure.state == "completed" and erasure.decided_by != erasure.completed_by

    page.goto(f"{site.url}/portal")
    page.wait_for_url(re.compile(r"/signin\?next=/portal"))  # her session ended with her account
    _sign_in(page, site, slug, "ada")
    assert "not right" in page.locator("#signin-error").inner_text()
    shot(page, "cannot-sign-in")


def test_a_patron_unsubscribes_in_one_click(site, committed_tenant, page, axe, shot):
    tenant_id = committed_tenant()
    publish_notice(site.db, tenant_id)
    _, patron_id = patron(site.db, tenant_id, "bea", name="Bea Reader")
    with tenant_session(site.db, tenant_id) as session:
        choice = Choice(Channel.EMAIL, Topic.NEWSLETTERS, True)
        consent.set_preferences(
            session, administrator(tenant_id), patron_id, [choice], method=ConsentMethod.STAFF,
            notice_version="2026-12",
        )  # fmt: skip
    token = unsubscribe.sign(site.db.master, tenant_id, patron_id, Topic.NEWSLETTERS)

    page.goto(f"{site.url}{unsubscribe.PATH}{token}")  # the link of a newsletter, not signed in
    assert "Stop receiving newsletters" in page.locator("main").inner_text()
    axe(page)
    shot(page, "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    assert "You will no longer receive newsletters" in page.locator("main").inner_text()
    axe(page)
    shot(page, "unsubscribed")
    with tenant_session(site.db, tenant_id) as session:
        assert not consent.is_subscribed(session, patron_id, Channel.EMAIL, Topic.NEWSLETTERS)
