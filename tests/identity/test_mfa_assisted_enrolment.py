"""After an MFA reset, an administrator mails an enrolment link; its holder, with the password, enrols a new
authenticator app and ends in a normal session. The first test runs the real path end to end: real commits,
the worker, the SMTP client, a real SMTP server (aiosmtpd), and the link read from the mail that arrived.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import links, passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.models import Account, AccountKind, AccountStatus, MfaEnrolmentLink
from bookwarden.identity.tokens import service as tokens
from bookwarden.jobs.worker import Worker
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import fresh_address, grant, stored_hash

PASSWORD = "violet tractor mango 42 harbour"
ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
PROBLEM = "urn:bookwarden:problem:"
TOKEN = re.compile(r"#token=([A-Za-z0-9_.-]+)")


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _admin(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, ADMIN)


def _account(session, tenant_id, username, *, roles=(), totp: str | None = None) -> Account:
    account = accounts.create_account(
        session, _admin(tenant_id), kind=AccountKind.STAFF, username=username, email=f"{username}@assist.example"
    )
    account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
    account.status = AccountStatus.ACTIVE
    if totp is not None:
        key = session.keyring.subject_key(tenant_id, account.id)
        account.totp_secret = encrypt_field(key, tenant_id, "accounts", "totp_secret", account.id, totp)
    session.flush()
    for role in roles:
        grant(session, tenant_id, account.id, role)
    return account


def _browser(app) -> TestClient:
    client = TestClient(
        app, base_url="https://testserver", client=(fresh_address(), 50000), raise_server_exceptions=False
    )
    client.headers["X-Requested-With"] = "fetch"
    return client


def _login(client: TestClient, institution: str, username: str = "hal"):
    return client.post(
        "/api/v1/auth/login", json={"institution": institution, "username": username, "password": PASSWORD}
    )


def _deliver(db) -> None:
    worker = Worker(db, "assisted-enrolment")
    while worker.run_one():
        pass


def test_a_reset_security_officer_enrols_again_from_the_mailed_link_and_ends_signed_in(
    committed_db,
    home,
    smtp_server,  # noqa: F811
):
    with platform_session(committed_db) as session:
        tenant = tenancy.create_tenant(session, committed_db.keyring, home, "assist-u", "Assist University")
    with tenant_session(committed_db, tenant.id) as session:
        add_security_contact(session, "soc@assist.example")
        holder = _account(session, tenant.id, "hal", roles=[BuiltinRole.SECURITY_OFFICER], totp=pyotp.random_base32())
    app = create_app(committed_db, Settings(home=home))
    admin = TestClient(app, raise_server_exceptions=False)
    with tenant_session(committed_db, tenant.id) as session:
        secret = tokens.issue_api_token(session, "admin", sorted(ADMIN), timedelta(days=1))[1]
    admin.headers["Authorization"] = f"Bearer {secret}"

    assert admin.post(f"/api/v1/accounts/{holder.id}/mfa-reset").status_code == 200
    refused = _login(_browser(app), "assist-u")
    assert refused.status_code == 403 and refused.json()["type"] == PROBLEM + "second-factor-enrolment-required"
    assert "enrolment link" in refused.json()["detail"]

    sent = admin.post(f"/api/v1/accounts/{holder.id}/mfa-enrolment-link")
    assert sent.status_code == 200, sent.text
    assert set(sent.json()) == {"account_id", "expires_at"}  # the administrator never sees the link
    _deliver(committed_db)

    mail = next(m for m in smtp_server.messages if m.recipients == ["hal@assist.example"])
    assert mail.message["Subject"] == "[Assist University] set up your second factor again"
    token = TOKEN.search(mail.message.get_content()).group(1)

    browser = _browser(app)
    wrong = browser.post("/api/v1/auth/mfa-enrolment", json={"token": token, "password": "not the password, sorry"})
    assert wrong.status_code == 401 and wrong.json()["type"] == PROBLEM + "invalid-credentials"
    begun = browser.post("/api/v1/auth/mfa-enrolment", json={"token": token, "password": PASSWORD})
    assert begun.status_code == 201, begun.text
    assert begun.json()["account_id"] == str(holder.id) and begun.json()["otpauth_uri"].startswith("otpauth://")
    assert browser.get("/api/v1/auth/me").status_code == 401  # the pending session authenticates nothing yet

    totp = pyotp.TOTP(begun.json()["secret"])
    assert browser.post("/api/v1/auth/mfa-enrolment/confirm", json={"code": "000000"}).status_code in (401, 422)
    enrolled = browser.post("/api/v1/auth/mfa-enrolment/confirm", json={"code": totp.now()})
    assert enrolled.status_code == 200, enrolled.text
    assert len(enrolled.json()["recovery_codes"]) == 10
    me = browser.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["id"] == str(holder.id)
    assert "security_contacts.manage" in me.json()["permissions"]

    # Once: the same link cannot start another enrolment, even from another browser.
    again = _browser(app).post("/api/v1/auth/mfa-enrolment", json={"token": token, "password": PASSWORD})
    assert again.status_code == 401 and again.json()["type"] == PROBLEM + "invalid-link"

    _deliver(committed_db)
    notices = {
        " ".join(m.message["Subject"].split()): m.message.get_content()
        for m in smtp_server.messages
        if m.recipients == ["soc@assist.example"]
    }
    sent_notice = notices["[Assist University] security notice: second factor enrolment link sent"]
    used_notice = notices["[Assist University] security notice: second factor enrolled with an administrator's link"]
    for body in (sent_notice, used_notice):
        assert str(holder.id) in body and "administrative change" in body  # a security officer's account
    with tenant_session(committed_db, tenant.id) as session:
        actions = session.execute(text("SELECT action FROM audit_events ORDER BY seq")).scalars().all()
        assert session.scalars(select(MfaEnrolmentLink)).all() == []
    for action in (
        "mfa.reset",
        "mfa.enrolment_link_sent",
        "auth.sign_in.failed",
        "mfa.enrolment_started",
        "mfa.enrolled",
    ):
        assert action in actions, action


# -- the rules around it (rolled-back database; mail read from the outbox) -------------------------


@pytest.fixture
def reset_holder(db, tenant, in_tenant):
    with in_tenant(tenant) as session:
        return _account(session, tenant.id, "hal", roles=[BuiltinRole.SECURITY_OFFICER])


def _links_in_outbox(in_tenant, tenant, to: str) -> set[str]:
    with in_tenant(tenant) as session:
        mails = [open_mail(session, row) for row in session.scalars(select(OutboxMessage))]
    return {TOKEN.search(m.body).group(1) for m in mails if m.to == to and "second factor" in m.subject}


def _link_from_outbox(in_tenant, tenant, to: str) -> str:
    (token,) = _links_in_outbox(in_tenant, tenant, to)
    return token


def test_a_newer_link_ends_the_earlier_one(reset_holder, client_for, in_tenant, tenant, browser):
    admin = client_for(tenant, permissions=ADMIN)
    assert admin.post(f"/api/v1/accounts/{reset_holder.id}/mfa-enrolment-link").status_code == 200
    first = _link_from_outbox(in_tenant, tenant, "hal@assist.example")
    assert admin.post(f"/api/v1/accounts/{reset_holder.id}/mfa-enrolment-link").status_code == 200
    (second,) = _links_in_outbox(in_tenant, tenant, "hal@assist.example") - {first}
    stale = browser().post("/api/v1/auth/mfa-enrolment", json={"token": first, "password": PASSWORD})
    assert stale.status_code == 401 and stale.json()["type"] == PROBLEM + "invalid-link"
    fresh = browser().post("/api/v1/auth/mfa-enrolment", json={"token": second, "password": PASSWORD})
    assert fresh.status_code == 201, fresh.text


def test_no_link_for_an_account_that_still_has_a_factor_for_oneself_or_without_the_permission(
    client_for, in_tenant, tenant
):
    with in_tenant(tenant) as session:
        enrolled = _account(session, tenant.id, "amy", totp=pyotp.random_base32())
        bare = _account(session, tenant.id, "bo")
    admin = client_for(tenant, permissions=ADMIN)
    refused = admin.post(f"/api/v1/accounts/{enrolled.id}/mfa-enrolment-link")
    assert refused.status_code == 409 and "mfa-reset" in refused.json()["detail"]
    reader = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.AUDITOR])
    assert reader.post(f"/api/v1/accounts/{bare.id}/mfa-enrolment-link").status_code == 403
    assert admin.post(f"/api/v1/accounts/{uuid.uuid4()}/mfa-enrolment-link").status_code == 404
    with in_tenant(tenant) as session:
        holder = Principal(PrincipalKind.ACCOUNT, bare.id, tenant.id, ADMIN)
        with pytest.raises(Forbidden, match="themselves"):
            enrolment_links.send_link(session, session.keyring.master, holder, bare.id)


def test_only_the_session_that_proved_the_password_with_the_link_can_confirm(
    reset_holder, client_for, in_tenant, tenant, browser
):
    admin = client_for(tenant, permissions=ADMIN)
    assert admin.post(f"/api/v1/accounts/{reset_holder.id}/mfa-enrolment-link").status_code == 200
    token = _link_from_outbox(in_tenant, tenant, "hal@assist.example")
    other = browser()
    with in_tenant(tenant) as session:
        _account(session, tenant.id, "sol", totp=pyotp.random_base32())
    assert _login(other, "alpha", "sol").json()["mfa_required"] is True  # a pending session of another kind
    assert other.post("/api/v1/auth/mfa-enrolment/confirm", json={"code": "123456"}).status_code == 401
    holder = browser()
    begun = holder.post("/api/v1/auth/mfa-enrolment", json={"token": token, "password": PASSWORD})
    code = pyotp.TOTP(begun.json()["secret"]).now()
    assert holder.post("/api/v1/auth/mfa-enrolment/confirm", json={"code": code}).status_code == 200
    with in_tenant(tenant) as session:
        stored = session.get(Account, (tenant.id, reset_holder.id))
        assert stored.totp_secret is not None and len(stored.recovery_code_hashes) == 10
    # A link signed by us but bound to a state no row has (a forgery would fail earlier) is the same 401.
    unbound = links.issue_for(
        _master(in_tenant, tenant), links.LinkPurpose.MFA_ENROLMENT, tenant.id, reset_holder.id, "x"
    )
    refused = browser().post("/api/v1/auth/mfa-enrolment", json={"token": unbound.token, "password": PASSWORD})
    assert refused.status_code == 401 and refused.json()["type"] == PROBLEM + "invalid-link"


def _master(in_tenant, tenant):
    with in_tenant(tenant) as session:
        return session.keyring.master
