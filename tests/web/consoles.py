"""Signing people in to the consoles through the test client, as a browser does (pages and cookies)."""

from __future__ import annotations

import re

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import text

from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.db.session import platform_session
from bookwarden.identity.operators import service as operator_accounts

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
OPERATOR_AUTH = "/api/v1/operator/auth"
OPERATOR_PASSWORD = "granite orchard lantern 93 violet"


def token(response) -> str:
    found = TOKEN.search(response.text)
    assert found, f"no form on {response.url}: {response.status_code} {response.text[:300]}"
    return found.group(1)


def post_form(client, page: str, action: str, **fields):
    """Open `page`, then send the form at `action` with the page's CSRF token (what a browser does)."""
    return client.post(action, data={"csrf_token": token(client.get(page)), **fields}, follow_redirects=False)


def sign_in(client, slug: str, username: str, password: str, totp: str | None = None):
    answer = post_form(client, "/signin", "/signin", institution=slug, username=username, password=password)
    assert answer.status_code == 303, answer.text
    if "second-factor" in answer.headers["location"]:
        code = pyotp.TOTP(totp).now()
        answer = post_form(client, "/signin/second-factor", "/signin/second-factor", code=code)
        assert answer.status_code == 303, answer.text
    assert client.cookies.get("bw_session")
    return client


def operator_enrolled(db, username: str, role: str, client=None) -> pyotp.TOTP:
    """An operator account enrolled with its one-time link (password and authenticator app), through the API."""
    client = client or TestClient(create_app(db, Settings()), base_url="https://testserver")
    with platform_session(db) as session:
        made = operator_accounts.create_operator(session, db.keyring, db.master, username, role)
    link = made.url.split("#token=", 1)[1]
    totp = pyotp.TOTP(client.post(f"{OPERATOR_AUTH}/enrolment", json={"token": link}).json()["secret"])
    body = {"token": link, "password": OPERATOR_PASSWORD, "code": totp.now()}
    assert client.post(f"{OPERATOR_AUTH}/enrolment/complete", json=body).status_code == 200
    with platform_session(db) as session:  # the confirming code is spent; the clock stands still here
        session.execute(
            text("UPDATE operator_accounts SET totp_last_step = totp_last_step - 2 WHERE username = :u"),
            {"u": username},
        )
    return totp


def operator_signed_in(db, client, username: str, role: str):
    """An enrolled operator signed in with password and code (the API's sign-in: the same cookie)."""
    totp = operator_enrolled(db, username, role, client)
    client.cookies.clear()
    login = client.post(f"{OPERATOR_AUTH}/login", json={"username": username, "password": OPERATOR_PASSWORD})
    assert login.status_code == 200, login.text
    assert client.post(f"{OPERATOR_AUTH}/mfa", json={"code": totp.now()}).status_code == 200
    return client
