"""In a real browser: a member of staff signs in with a password, then the code of their authenticator app."""

from __future__ import annotations

import re

import pyotp
import pytest

from bookwarden.core.permissions import BuiltinRole
from bookwarden.db.session import platform_session
from bookwarden.identity import passwords
from bookwarden.tenancy.models import Tenant
from tests.e2e.people import PASSWORD, staff


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def test_staff_sign_in_with_totp(site, committed_tenant, page, axe, shot):
    tenant_id = committed_tenant()
    with platform_session(site.db) as session:
        slug = session.get(Tenant, tenant_id).slug
    secret = pyotp.random_base32()
    staff(site.db, tenant_id, "ines", roles=[BuiltinRole.PRIVACY_OFFICER], totp=secret)

    page.goto(f"{site.url}/signin")
    axe(page)
    shot(page, "sign-in")
    page.get_by_label("Institution").fill(slug)
    page.get_by_label("Username").fill("ines")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert "not right" in page.locator("#signin-error").inner_text()
    shot(page, "wrong-password")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/signin/second-factor"))
    axe(page)
    shot(page, "second-factor")
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Continue").click()
    assert "code is not right" in page.locator("#signin-error").inner_text()

    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/console"))
    shot(page, "signed-in")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["bw_session"]["httpOnly"] and cookies["bw_session"]["sameSite"] == "Lax"
    assert cookies["bw_csrf"]["httpOnly"] and cookies["bw_csrf"]["sameSite"] == "Strict"
    # The page's session is the API's: the same cookie signs the API's calls in.
    me = page.request.get(f"{site.url}/api/v1/auth/me")
    assert me.status == 200 and me.json()["kind"] == "account"
