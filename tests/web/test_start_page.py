"""The start page: the ways in, and on a demo database the demo's sign-ins, which work as shown."""

from __future__ import annotations

import os

from fastapi.testclient import TestClient

from bookwarden import demo
from bookwarden.api.app import create_app
from bookwarden.identity.signin import service as signin
from bookwarden.web import demo_logins
from tests.helpers import fresh_address


def test_the_start_page_links_the_portal_and_the_consoles_and_shows_no_logins_without_a_demo(db, settings):
    page = TestClient(create_app(db, settings), client=(fresh_address(), 1)).get("/")
    assert page.status_code == 200
    for link in ('href="/portal"', 'href="/console"', 'href="/operator"', 'href="/signin"'):
        assert link in page.text
    assert "Demo sign-ins" not in page.text


def test_the_demo_gives_patrons_portal_accounts_and_the_start_page_shows_them(committed_db, settings):
    issued = demo.seed(committed_db, settings, patrons_each=4)
    path = settings.resolved_home / demo_logins.FILE
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"  # passwords: readable by the owner only
    page = TestClient(create_app(committed_db, settings), client=(fresh_address(), 1)).get("/")
    riverside = issued["riverside-public"]
    assert len(riverside.patron_logins) == demo.PORTAL_PATRONS
    username, password = riverside.patron_logins[0]
    assert username in page.text and password in page.text and riverside.desk_password in page.text
    signed = signin.sign_in(
        committed_db, signin.SignInAttempt("riverside-public", username, password, fresh_address(), "test")
    )
    assert not signed.second_factor_pending  # the portal login works as shown
