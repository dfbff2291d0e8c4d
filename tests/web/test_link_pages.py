"""Pages that one-time links open, driven as a browser drives them (the CSRF token read from each page)."""

from __future__ import annotations

import re

import pyotp
import pytest

from bookwarden.audit.events import Action
from bookwarden.identity import passwords
from tests.invariants.audit_coverage import PASSWORD, World
from tests.web.audit_recipes import TOKEN, enrolment_token, page_token


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def world(request, db, app, tenant, issue_token, operator_token, browser) -> World:
    return World(request, db, app, tenant, issue_token, operator_token, browser)


def test_an_enrolment_link_sets_up_an_app_and_signs_in_across_the_cookie_change(world):
    client = world.browser()
    token = enrolment_token(world, "lena")
    fields = {"csrf_token": page_token(client, "/enrol-second-factor"), "token": token, "password": PASSWORD}
    begun = client.post("/enrol-second-factor", data=fields)
    assert begun.status_code == 200, begun.text
    secret = re.search(r"<dt>Secret</dt><dd><code>([A-Z2-7]+)</code>", begun.text).group(1)
    # The page that set the pending session's cookie carries a token for that cookie, not the one before.
    code = {"csrf_token": TOKEN.search(begun.text).group(1), "code": pyotp.TOTP(secret).now()}
    before = world.trail.heads()
    enrolled = client.post("/enrol-second-factor", data=code)
    assert enrolled.status_code == 200 and enrolled.text.count("<li><code>") == 10, enrolled.text
    assert Action.MFA_ENROLLED in {event.action for event in world.trail.since(before)}
    assert client.get("/api/v1/auth/me").json()["kind"] == "account"  # signed in, with the factor passed


def test_a_wrong_password_on_an_enrolment_link_is_refused_like_a_sign_in(world):
    client = world.browser()
    fields = {
        "csrf_token": page_token(client, "/enrol-second-factor"),
        "token": enrolment_token(world, "lena"),
        "password": "not the password",
    }
    refused = client.post("/enrol-second-factor", data=fields)
    assert refused.status_code == 401 and "not right" in refused.text and "Secret" not in refused.text
