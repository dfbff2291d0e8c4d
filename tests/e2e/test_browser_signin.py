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


# Registers a security key through the API's ceremony, as a page's script would (the portal's own key
# management is the console's): options -> navigator.credentials.create() -> the credential, base64url.
REGISTER_KEY = """async () => {
  const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const headers = {"Content-Type": "application/json", "X-Requested-With": "fetch"};
  const asked = await fetch("/api/v1/auth/me/mfa/webauthn/options", {method: "POST", headers});
  const options = (await asked.json()).options;
  options.challenge = bytes(options.challenge);
  options.user.id = bytes(options.user.id);
  (options.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
  const made = await navigator.credentials.create({publicKey: options});
  const credential = {id: made.id, rawId: b64(made.rawId), type: made.type,
    response: {clientDataJSON: b64(made.response.clientDataJSON),
               attestationObject: b64(made.response.attestationObject)},
    clientExtensionResults: made.getClientExtensionResults()};
  const answer = await fetch("/api/v1/auth/me/mfa/webauthn/credentials",
    {method: "POST", headers, body: JSON.stringify({credential, name: "test key"})});
  return answer.status;
}"""


def test_staff_sign_in_with_a_security_key(site, committed_tenant, page, shot):
    from bookwarden.identity.enrolment.service import RelyingParty, relying_party

    # WebAuthn wants a secure context and a host name: the site opened at localhost, the relying party to match.
    local = site.url.replace("127.0.0.1", "localhost")
    site.app.dependency_overrides[relying_party] = lambda: RelyingParty(public_url=local)
    tenant_id = committed_tenant()
    with platform_session(site.db) as session:
        slug = session.get(Tenant, tenant_id).slug
    secret = pyotp.random_base32()
    staff(site.db, tenant_id, "kim", roles=[BuiltinRole.PRIVACY_OFFICER], totp=secret)
    authenticator = page.context.new_cdp_session(page)
    authenticator.send("WebAuthn.enable")
    authenticator.send(
        "WebAuthn.addVirtualAuthenticator",
        {"options": {"protocol": "ctap2", "transport": "usb", "hasResidentKey": True, "hasUserVerification": True,
                     "isUserVerified": True, "automaticPresenceSimulation": True}},
    )  # fmt: skip

    def password_step():
        page.goto(f"{local}/signin")
        page.get_by_label("Institution").fill(slug)
        page.get_by_label("Username").fill("kim")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/signin/second-factor"))

    password_step()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/console"))
    assert page.evaluate(REGISTER_KEY) == 201
    page.goto(f"{local}/signin")  # a page with the sign-out form (the console's pages are not ours)
    page.get_by_role("button", name="Sign out").click()

    password_step()
    shot(page, "second-factor-with-key")
    page.get_by_role("button", name="Use my security key").click()
    page.wait_for_url(re.compile(r"/console"))
    assert page.request.get(f"{local}/api/v1/auth/me").json()["kind"] == "account"
