"""Institutional sign-on (SAML 2.0) end to end, against a real identity provider built here with
pysaml2's own IdP (saml2.server.Server), its key and certificate made by `cryptography`; no network.

The browser is the test client: it starts at our login address, is sent to the IdP (whose answer
this file builds, as the IdP's page would), posts that answer to our ACS, and gets a session.
Every refusal is checked to leave no session and an audit event naming its reason.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import saml2.time_util
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.access.roles import notices
from bookwarden.core.errors import ApprovalRequired
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import jobs as housekeeping
from bookwarden.identity import roles as access
from bookwarden.identity import sessions, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountKind, AccountStatus
from bookwarden.identity.saml import config as saml_config
from bookwarden.identity.saml import protocol as saml_protocol
from bookwarden.identity.saml import service as saml
from bookwarden.identity.saml.models import SamlConfig
from bookwarden.identity.saml.protocol import Refusal
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy.models import Tenant
from tests.e2e.saml_idp import IDP, IDP_SSO, STAFF, Answer, IdentityProvider, key_pair
from tests.helpers import fresh_address, grant

MFA = "https://refeds.org/profile/mfa"
SHA1 = ("http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2000/09/xmldsig#sha1")
MAPPINGS = [
    {"attribute": "eduPersonAffiliation", "value": "staff", "role": "circulation_staff"},
    # Only roles without administrative permissions (access/power.py) can be mapped: not privacy_officer,
    # which reads the audit trail; those are granted by a person, under a second person's approval.
    {"attribute": "eduPersonAffiliation", "value": "reader", "role": "patron"},
]
PROBLEM = "application/problem+json"
ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]


# -- the identity provider -----------------------------------------------------------------


@pytest.fixture(scope="module")
def key_pairs(tmp_path_factory):
    """The IdP's real key pair and an impostor's, made once for the module (RSA generation is slow)."""
    folder = tmp_path_factory.mktemp("idp-keys")
    return {"idp": key_pair(folder, "idp"), "impostor": key_pair(folder, "impostor")}


# -- fixtures ------------------------------------------------------------------------------


def _admin_token(issue_token, tenant) -> str:
    # sso.manage to ask for a change and approve another's; accounts.read to reach the approvals.
    return issue_token(tenant, permissions={Permission.SSO_MANAGE, Permission.ACCOUNTS_READ})


@pytest.fixture
def admin(app, issue_token):
    """admin(tenant) -> a client holding sso.manage in that tenant."""
    from fastapi.testclient import TestClient

    def make(t):
        client = TestClient(app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {_admin_token(issue_token, t)}"
        return client

    return make


@pytest.fixture
def sp_metadata(browser):
    return lambda slug: browser().get(f"/api/v1/sso/saml/{slug}/metadata").text


OTHER_SP = "https://other-sp.example/metadata"


@pytest.fixture
def idp(key_pairs, sp_metadata, tenant, other_tenant):
    """The institutions' identity provider: it knows both tenants' service providers, and another one."""
    alpha = sp_metadata("alpha")
    other = alpha.replace(f'entityID="{saml_protocol.sp_urls("alpha").entity_id}"', f'entityID="{OTHER_SP}"')
    return IdentityProvider(key_pairs["idp"], [alpha, sp_metadata("beta"), other])


def _body(idp, metadata: str | None = None, **settings) -> dict:
    return {"idp_metadata": metadata or idp.metadata(), "role_mappings": MAPPINGS, "create_accounts": True, **settings}


@pytest.fixture
def configure(admin, idp):
    """configure(tenant, **settings) -> asked by one administrator and approved by another (maker-checker):
    the approval's response, or the PUT's when it refused. By default JIT accounts and the staff mapping."""

    def put(t, *, metadata: str | None = None, **settings):
        asked = admin(t).put("/api/v1/sso/saml", json=_body(idp, metadata, **settings))
        if asked.status_code != 202:
            return asked
        return admin(t).post(f"/api/v1/approvals/{asked.json()['id']}/approve")

    return put


@pytest.fixture
def contacts(in_tenant, tenant):
    with in_tenant(tenant) as session:
        notices.add_security_contact(session, "security@alpha.example")


def _start(client, slug="alpha", next_path="/console") -> str:
    response = client.get(f"/api/v1/sso/saml/{slug}/login", params={"next": next_path}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["location"]


def _post(client, answer: Answer, slug="alpha", relay_state: str | None = None):
    return client.post(
        f"/api/v1/sso/saml/{slug}/acs",
        data={"SAMLResponse": answer.saml_response, "RelayState": relay_state or answer.relay_state},
        follow_redirects=False,
    )


def _events(in_tenant, t, action: str) -> list[dict]:
    with in_tenant(t) as session:
        rows = session.execute(
            text("SELECT outcome, target_id, details FROM audit_events WHERE action = :a ORDER BY seq"), {"a": action}
        )
        return [dict(r._mapping) for r in rows]


def _live_sessions(in_tenant, t) -> int:
    with in_tenant(t) as session:
        return session.execute(text("SELECT count(*) FROM sessions WHERE revoked_at IS NULL")).scalar_one()


def _account(in_tenant, t, username: str) -> Account | None:
    with in_tenant(t) as session:
        return accounts.find_by_username(session, username)


def _roles(in_tenant, t, account_id) -> list[str]:
    from bookwarden.identity.roles import held_roles

    with in_tenant(t) as session:
        return held_roles(session, account_id)


def _security_mail(in_tenant, t) -> list[str]:
    with in_tenant(t) as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.category == MailCategory.SECURITY)).all()
        return [open_mail(session, row).subject for row in rows]


def _signed_in(browser, idp, **answer_kw):
    client = browser()
    answer = idp.answer(_start(client), **answer_kw)
    return client, _post(client, answer)


# -- signing in ----------------------------------------------------------------------------


def test_sign_in_through_the_identity_provider_ends_in_a_session_like_a_password_sign_in(
    browser, idp, configure, in_tenant, tenant
):
    assert configure(tenant).status_code == 200
    client = browser()
    redirect = _start(client, next_path="/console/loans")
    assert parse_qs(urlsplit(redirect).query).keys() == {"SAMLRequest", "RelayState"}

    response = _post(client, idp.answer(redirect))

    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/loans"
    set_cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in set_cookie if c.startswith(f"{sessions.COOKIE_NAME}="))
    for attribute in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
        assert attribute.lower() in session_cookie.lower(), attribute
    account = _account(in_tenant, tenant, "jdoe@alpha.example")
    assert response.json() == {"account_id": str(account.id), "mfa_required": False}

    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200, me.text
    assert me.json()["id"] == str(account.id)
    assert set(me.json()["permissions"]) == set(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
    assert _roles(in_tenant, tenant, account.id) == ["circulation_staff"]  # staff mapped; "member" maps nothing

    (event,) = _events(in_tenant, tenant, "auth.sign_in.succeeded")
    assert event["outcome"] == "succeeded" and event["target_id"] == account.id
    assert event["details"]["method"] == "saml"
    assert event["details"]["account_created"] is True
    assert event["details"]["roles_granted"] == ["circulation_staff"]


def test_a_new_username_gets_an_account_that_is_audited_and_notified(
    browser, idp, configure, in_tenant, tenant, contacts
):
    configure(tenant, email_attribute="mail", display_name_attribute="displayName")
    identity = {**STAFF, "mail": ["jdoe@alpha.example"], "displayName": ["Jo Doe"]}
    _, response = _signed_in(browser, idp, identity=identity)
    assert response.status_code == 303

    account = _account(in_tenant, tenant, "jdoe@alpha.example")
    assert account.status is AccountStatus.ACTIVE and account.kind is AccountKind.STAFF
    assert account.password_hash is None  # it signs in through the IdP only
    (created,) = _events(in_tenant, tenant, "account.created")
    (activated,) = _events(in_tenant, tenant, "account.activated")
    assert created["target_id"] == activated["target_id"] == account.id
    assert activated["details"] == {"method": "saml"}
    with in_tenant(tenant) as session:  # both name the institution's IdP as who acted
        actors = session.execute(
            text(
                "SELECT DISTINCT actor_kind, actor_id FROM audit_events WHERE action IN ('account.created', "
                "'account.activated', 'role.granted')"
            )
        ).all()
    assert actors == [("system", saml.identity_provider(tenant.id).id)]
    subjects = _security_mail(in_tenant, tenant)
    assert any("account created" in s for s in subjects), subjects
    assert any("role granted" in s for s in subjects), subjects


def test_unknown_usernames_are_refused_when_the_institution_does_not_create_accounts(
    browser, idp, configure, in_tenant, tenant
):
    configure(tenant, create_accounts=False)
    _, response = _signed_in(browser, idp)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:bookwarden:problem:saml-sign-in-refused"
    assert _account(in_tenant, tenant, "jdoe@alpha.example") is None
    assert [e["details"] for e in _events(in_tenant, tenant, "auth.sign_in.failed")] == [
        {"method": "saml", "reason": Refusal.UNKNOWN_ACCOUNT.value}
    ]


def test_an_existing_account_is_matched_by_username_and_roles_follow_the_attributes(
    browser, idp, configure, in_tenant, tenant
):
    configure(tenant, create_accounts=False)
    admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with in_tenant(tenant) as session:
        account = accounts.create_account(session, admin, kind=AccountKind.STAFF, username="jdoe@alpha.example")
        account.status = AccountStatus.ACTIVE
        grant(session, tenant.id, account.id, "auditor")  # given by a person: sign-on never touches it

    # The auditor role carries administrative permissions: a second factor, asserted here by the IdP.
    identity = {**STAFF, "eduPersonAffiliation": ["staff", "reader"]}
    _, first = _signed_in(browser, idp, identity=identity, authn_class=MFA)
    assert first.status_code == 303, first.text
    assert _roles(in_tenant, tenant, account.id) == ["auditor", "circulation_staff", "patron"]

    # The IdP no longer says "staff": the role sign-on granted goes; the auditor role stays.
    _, second = _signed_in(browser, idp, identity={**STAFF, "eduPersonAffiliation": ["reader"]}, authn_class=MFA)
    assert second.status_code == 303
    assert _roles(in_tenant, tenant, account.id) == ["auditor", "patron"]
    assert _events(in_tenant, tenant, "auth.sign_in.succeeded")[-1]["details"]["roles_revoked"] == ["circulation_staff"]


def test_a_disabled_account_is_refused(browser, idp, configure, in_tenant, tenant):
    configure(tenant)
    _signed_in(browser, idp)
    with in_tenant(tenant) as session:
        account = accounts.find_by_username(session, "jdoe@alpha.example")
        account.status = AccountStatus.DISABLED
    before = _live_sessions(in_tenant, tenant)
    client, response = _signed_in(browser, idp)
    assert response.status_code == 401
    assert _live_sessions(in_tenant, tenant) == before
    assert client.get("/api/v1/auth/me").status_code == 401
    assert _events(in_tenant, tenant, "auth.sign_in.failed")[-1]["details"]["reason"] == "account-disabled"


# -- the second factor ---------------------------------------------------------------------


@pytest.fixture
def administrator(in_tenant, tenant):
    """An existing tenant administrator (a role that requires a second factor) with an authenticator app."""
    secret = pyotp.random_base32()
    admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with in_tenant(tenant) as session:
        account = accounts.create_account(session, admin, kind=AccountKind.STAFF, username="jdoe@alpha.example")
        account.status = AccountStatus.ACTIVE
        key = session.keyring.subject_key(tenant.id, account.id)
        account.totp_secret = encrypt_field(key, tenant.id, "accounts", "totp_secret", account.id, secret)
        session.flush()
        grant(session, tenant.id, account.id, "tenant_admin")
    return account, secret


def test_an_administrator_without_mfa_at_the_idp_completes_our_second_factor(
    browser, idp, configure, administrator, in_tenant, tenant
):
    configure(tenant)
    account, secret = administrator
    client, response = _signed_in(browser, idp)  # the IdP asserts a password only
    assert response.status_code == 303
    assert response.json() == {"account_id": str(account.id), "mfa_required": True}
    assert response.headers["location"] == "/console?mfa=required"
    assert client.get("/api/v1/auth/me").status_code == 401  # nothing until the second step

    done = client.post("/api/v1/auth/mfa", json={"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200, done.text
    assert client.get("/api/v1/auth/me").json()["id"] == str(account.id)


def test_mfa_asserted_by_the_idp_completes_the_sign_in(browser, idp, configure, administrator, in_tenant, tenant):
    configure(tenant)
    account, _ = administrator
    client, response = _signed_in(browser, idp, authn_class=MFA)
    assert response.status_code == 303
    assert response.json()["mfa_required"] is False
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["id"] == str(account.id)
    (event,) = _events(in_tenant, tenant, "auth.sign_in.succeeded")
    assert event["details"]["second_factor"] == "asserted by the identity provider"


def test_an_administrator_with_no_second_factor_anywhere_is_refused(browser, idp, configure, in_tenant, tenant):
    configure(tenant)
    admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with in_tenant(tenant) as session:
        account = accounts.create_account(session, admin, kind=AccountKind.STAFF, username="jdoe@alpha.example")
        account.status = AccountStatus.ACTIVE
        grant(session, tenant.id, account.id, "tenant_admin")
    _, response = _signed_in(browser, idp)
    assert response.status_code == 403
    assert _live_sessions(in_tenant, tenant) == 0
    assert _events(in_tenant, tenant, "auth.sign_in.failed")[-1]["details"]["reason"] == (
        Refusal.SECOND_FACTOR_ENROLMENT_REQUIRED.value
    )


# -- attacks -------------------------------------------------------------------------------


def _tampered(answer: Answer) -> Answer:
    xml = answer.xml()
    assert xml.count("jdoe@alpha.example") == 1
    return answer.with_xml(xml.replace("jdoe@alpha.example", "admin@alpha.example"))


ATTACKS = {
    "unsigned": (lambda idp, url: idp.answer(url, sign_assertion=False), Refusal.UNSIGNED),
    # A signature over the whole Response is not enough: the assertion itself must be signed.
    "only-the-response-signed": (
        lambda idp, url: idp.answer(url, sign_assertion=False, sign_response=True),
        Refusal.UNSIGNED,
    ),
    "tampered-after-signing": (lambda idp, url: _tampered(idp.answer(url)), Refusal.BAD_SIGNATURE),
    "for-another-audience": (
        lambda idp, url: idp.answer(url, audience=OTHER_SP),
        Refusal.WRONG_AUDIENCE,
    ),
    "sha1": (lambda idp, url: idp.answer(url, algorithms=SHA1), Refusal.WEAK_ALGORITHM),
    "not-base64-xml": (
        lambda idp, url: Answer("<not base64>", parse_qs(urlsplit(url).query)["RelayState"][0], ""),
        Refusal.MALFORMED,
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_forged_or_altered_answers_sign_nobody_in(browser, idp, configure, in_tenant, tenant, attack):
    configure(tenant)
    forge, reason = ATTACKS[attack]
    client = browser()
    response = _post(client, forge(idp, _start(client)))
    _assert_refused(response, client, in_tenant, tenant, reason)


def _assert_refused(response, client, in_tenant, t, reason: Refusal):
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:bookwarden:problem:saml-sign-in-refused"
    assert not any(c.startswith(f"{sessions.COOKIE_NAME}=") for c in response.headers.get_list("set-cookie"))
    assert client.get("/api/v1/auth/me").status_code == 401
    assert _live_sessions(in_tenant, t) == 0
    failures = _events(in_tenant, t, "auth.sign_in.failed")
    assert failures[-1]["details"] == {"method": "saml", "reason": reason.value}
    assert failures[-1]["outcome"] == "denied"


def test_an_assertion_signed_with_another_key_is_refused(
    key_pairs, browser, idp, sp_metadata, configure, in_tenant, tenant
):
    configure(tenant)  # trusts the real IdP's certificate
    impostor = IdentityProvider(key_pairs["impostor"], [sp_metadata("alpha")])  # same entity id, its own key
    client = browser()
    response = _post(client, impostor.answer(_start(client)))
    _assert_refused(response, client, in_tenant, tenant, Refusal.BAD_SIGNATURE)


def test_an_expired_assertion_is_refused(browser, idp, configure, in_tenant, tenant, monkeypatch):
    configure(tenant)
    client = browser()
    answer = idp.answer(_start(client))  # valid for 5 minutes
    # Ten minutes later by the clock pysaml2 checks NotOnOrAfter with (ours stays within the request's 10).
    real = saml2.time_util.utc_now
    monkeypatch.setattr(saml2.time_util, "utc_now", lambda: real() + 600)
    _assert_refused(_post(client, answer), client, in_tenant, tenant, Refusal.EXPIRED)


def test_a_replayed_answer_is_refused(browser, idp, configure, in_tenant, tenant):
    configure(tenant)
    client = browser()
    answer = idp.answer(_start(client))
    assert _post(client, answer).status_code == 303
    sessions_after_first = _live_sessions(in_tenant, tenant)

    # The request it answered has been answered: the same post again finds nothing to answer.
    assert _post(client, answer).status_code == 401
    # Had that request somehow been outstanding again, the assertion id has been used already.
    browser_token = "a browser that holds the cookie"
    with in_tenant(tenant) as session:
        session.execute(
            text(
                "INSERT INTO saml_requests (tenant_id, relay_state, request_id, browser_hash, next_path, expires_at) "
                "VALUES (:t, 'again', :r, :b, '/', now() + interval '5 minutes')"
            ),
            {"t": tenant.id, "r": answer.request_id, "b": hashlib.sha256(browser_token.encode()).digest()},
        )
    client.cookies.set(saml.BROWSER_COOKIE, browser_token, path="/api/v1/sso/saml/alpha/acs")
    assert _post(client, answer, relay_state="again").status_code == 401

    assert _live_sessions(in_tenant, tenant) == sessions_after_first
    reasons = [e["details"]["reason"] for e in _events(in_tenant, tenant, "auth.sign_in.failed")]
    assert reasons == [Refusal.NOT_STARTED.value, Refusal.REPLAYED.value]


def test_another_browser_cannot_use_the_answer_meant_for_the_one_that_started(
    browser, idp, configure, in_tenant, tenant
):
    """Login CSRF: a response obtained in one browser cannot be planted in another."""
    configure(tenant)
    victim, attacker = browser(), browser()
    answer = idp.answer(_start(attacker))
    _assert_refused(_post(victim, answer), victim, in_tenant, tenant, Refusal.NOT_STARTED)
    # The attempt used nothing up: the browser that started the sign-in still finishes it.
    assert _post(attacker, answer).status_code == 303


def test_another_institutions_acs_refuses_this_institutions_answer(
    browser, idp, configure, in_tenant, tenant, other_tenant
):
    """Both institutions trust one IdP (a federation's, say): its answer for one is no good at the other."""
    configure(tenant)
    configure(other_tenant)
    client = browser()
    alpha_answer = idp.answer(_start(client, "alpha"))
    beta_relay = parse_qs(urlsplit(_start(client, "beta")).query)["RelayState"][0]

    response = _post(client, alpha_answer, slug="beta", relay_state=beta_relay)

    _assert_refused(response, client, in_tenant, other_tenant, Refusal.WRONG_DESTINATION)
    assert _account(in_tenant, other_tenant, "jdoe@alpha.example") is None


def test_an_unsolicited_answer_is_refused(browser, idp, configure, in_tenant, tenant):
    """IdP-initiated sign-on is refused: InResponseTo must name a request this browser started."""
    configure(tenant)
    client = browser()
    answer = idp.answer(_start(client))
    response = client.post(
        "/api/v1/sso/saml/alpha/acs", data={"SAMLResponse": answer.saml_response}, follow_redirects=False
    )
    _assert_refused(response, client, in_tenant, tenant, Refusal.NOT_STARTED)


def test_an_answer_to_another_request_of_the_same_browser_is_refused(browser, idp, configure, in_tenant, tenant):
    configure(tenant)
    client = browser()
    first = idp.answer(_start(client))
    second_relay = parse_qs(urlsplit(_start(client)).query)["RelayState"][0]
    response = _post(client, first, relay_state=second_relay)
    _assert_refused(response, client, in_tenant, tenant, Refusal.WRONG_REQUEST)


def test_xml_entities_in_a_response_are_refused_unparsed(browser, idp, configure, in_tenant, tenant):
    configure(tenant)
    client = browser()
    answer = idp.answer(_start(client))
    bomb = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
    forged = answer.with_xml(bomb + answer.xml().split("?>", 1)[1].replace("jdoe@alpha.example", "&b;"))
    _assert_refused(_post(client, forged), client, in_tenant, tenant, Refusal.MALFORMED)


# -- configuration -------------------------------------------------------------------------


def test_the_service_provider_metadata_is_public_and_asks_for_signed_assertions(browser, tenant):
    response = browser().get("/api/v1/sso/saml/alpha/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/samlmetadata+xml")
    xml = response.text
    sp = saml_protocol.sp_urls("alpha")
    assert f'entityID="{sp.entity_id}"' in xml
    assert f'Location="{sp.acs_url}"' in xml and "HTTP-POST" in xml
    assert 'WantAssertionsSigned="true"' in xml
    assert "sha1" not in xml and "md5" not in xml  # only the algorithms accepted are advertised
    assert browser().get("/api/v1/sso/saml/nowhere/metadata").status_code == 404


def test_administrators_read_replace_and_remove_the_configuration(admin, configure, idp, in_tenant, tenant, contacts):
    client = admin(tenant)
    assert client.get("/api/v1/sso/saml").status_code == 404
    approved = configure(tenant, create_accounts=False)
    assert approved.status_code == 200, approved.text
    body = client.get("/api/v1/sso/saml").json()
    assert body["idp_entity_id"] == IDP and body["idp_sso_url"] == IDP_SSO
    (certificate,) = body["idp_signing_certificates"]
    assert certificate["subject"] == "CN=idp" and len(certificate["sha256"]) == 95
    assert body["sp_entity_id"] == saml_protocol.sp_urls("alpha").entity_id
    assert body["role_mappings"] == MAPPINGS and body["create_accounts"] is False

    removal = client.delete("/api/v1/sso/saml")
    assert removal.status_code == 202, removal.text
    assert removal.json()["action"] == "remove_sso" and removal.json()["params"]["idp_entity_id"] == IDP
    assert client.get("/api/v1/sso/saml").status_code == 200  # in force until another administrator approves
    assert admin(tenant).post(f"/api/v1/approvals/{removal.json()['id']}/approve").status_code == 200
    assert client.get("/api/v1/sso/saml").status_code == 404
    assert client.delete("/api/v1/sso/saml").status_code == 404  # nothing left to remove
    assert [e["outcome"] for e in _events(in_tenant, tenant, "sso.configured")] == ["succeeded"]
    (removed,) = _events(in_tenant, tenant, "sso.removed")
    assert removed["details"]["approval_id"] == removal.json()["id"]
    subjects = _security_mail(in_tenant, tenant)
    assert any("institutional sign-on configured" in s for s in subjects)
    assert any("institutional sign-on removed" in s for s in subjects)


# -- maker-checker: who controls the IdP decides who signs in as whom -----------------------


def _whoami(client) -> str:
    return client.get("/api/v1/auth/me").json()["id"]


def _security_mails(in_tenant, t) -> list[tuple[str, str]]:
    with in_tenant(t) as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.category == MailCategory.SECURITY)).all()
        return [(mail.subject, mail.body) for mail in (open_mail(session, row) for row in rows)]


def test_the_first_configuration_is_only_asked_and_the_asker_cannot_approve_it(
    admin, idp, browser, in_tenant, tenant, contacts
):
    maker, checker = admin(tenant), admin(tenant)
    asked = maker.put("/api/v1/sso/saml", json=_body(idp))

    assert asked.status_code == 202, asked.text
    request = asked.json()
    assert request["action"] == "configure_sso" and request["status"] == "pending"
    assert request["requested_by"] == _whoami(maker)
    params = request["params"]
    assert params["content"]["idp_metadata"] == idp.metadata()  # the approver sees exactly what would apply
    assert params["content_sha256"] == saml_config.digest(params["content"])
    assert params["replaces_sha256"] is None  # nothing in force yet: the first configuration needs approval too
    assert params["idp_entity_id"] == IDP and len(params["signing_certificates"]) == 1
    assert maker.get("/api/v1/sso/saml").status_code == 404  # not in force
    assert browser().get("/api/v1/sso/saml/alpha/login", follow_redirects=False).status_code == 404
    # The security contacts hear of it before anyone can approve it.
    # (Among the notices of the tokens the test's administrators were given.)
    asked_mails = [(s, b) for s, b in _security_mails(in_tenant, tenant) if "institutional sign-on change asked" in s]
    assert len(asked_mails) == 1
    body = asked_mails[0][1]
    assert params["content_sha256"] in body and request["id"] in body

    own = maker.post(f"/api/v1/approvals/{request['id']}/approve")
    assert own.status_code == 409, own.text
    assert own.json()["type"] == "urn:bookwarden:problem:segregation-of-duties"
    assert maker.get("/api/v1/sso/saml").status_code == 404

    approved = checker.post(f"/api/v1/approvals/{request['id']}/approve")

    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == _whoami(checker)
    assert maker.get("/api/v1/sso/saml").json()["idp_entity_id"] == IDP
    assert browser().get("/api/v1/sso/saml/alpha/login", follow_redirects=False).status_code == 303
    (requested,) = _events(in_tenant, tenant, "approval.requested")
    assert "content" not in requested["details"]  # the metadata is recorded by its digest
    assert requested["details"]["content_sha256"] == params["content_sha256"]
    assert requested["details"]["sensitive_action"] == "configure_sso"
    assert len(_events(in_tenant, tenant, "approval.approved")) == 1
    (configured,) = _events(in_tenant, tenant, "sso.configured")
    assert configured["details"]["approval_id"] == request["id"]
    assert configured["details"]["requested_by"] == _whoami(maker)
    assert configured["details"]["content_sha256"] == params["content_sha256"]
    subjects = [subject for subject, _ in _security_mails(in_tenant, tenant)]
    assert sum("institutional sign-on configured" in s for s in subjects) == 1


def test_a_rejected_change_is_never_applied_and_the_asker_cannot_decide_it_either_way(admin, idp, in_tenant, tenant):
    maker = admin(tenant)
    asked = maker.put("/api/v1/sso/saml", json=_body(idp)).json()
    own = maker.post(f"/api/v1/approvals/{asked['id']}/reject")
    assert own.status_code == 409 and own.json()["type"] == "urn:bookwarden:problem:segregation-of-duties"

    rejected = admin(tenant).post(f"/api/v1/approvals/{asked['id']}/reject")

    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert admin(tenant).post(f"/api/v1/approvals/{asked['id']}/approve").status_code == 409  # decided already
    assert maker.get("/api/v1/sso/saml").status_code == 404
    (event,) = _events(in_tenant, tenant, "approval.rejected")
    assert event["details"]["content_sha256"] == asked["params"]["content_sha256"]


def test_the_database_refuses_an_asker_deciding_their_own_request(admin, idp, in_tenant, tenant):
    asked = admin(tenant).put("/api/v1/sso/saml", json=_body(idp)).json()
    with pytest.raises(IntegrityError, match="checker_is_not_maker"), in_tenant(tenant) as session:
        session.execute(
            text("UPDATE approval_requests SET status = 'approved', decided_by = requested_by WHERE id = :id"),
            {"id": asked["id"]},
        )


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": "impostor"},  # another IdP: the attack this guards against
        {"role_mappings": [{"attribute": "eduPersonAffiliation", "value": "member", "role": "patron"}]},
        {"create_accounts": False},
        {"username_attribute": "NameID"},
    ],
    ids=["identity provider", "role mapping", "accounts on first sign-in", "username attribute"],
)
def test_every_change_of_a_configuration_in_force_waits_for_a_second_administrator(
    key_pairs, admin, configure, idp, sp_metadata, in_tenant, tenant, change
):
    assert configure(tenant).status_code == 200
    before = admin(tenant).get("/api/v1/sso/saml").json()
    if change.get("metadata") == "impostor":
        change = {"metadata": IdentityProvider(key_pairs["impostor"], [sp_metadata("alpha")]).metadata()}

    asked = admin(tenant).put("/api/v1/sso/saml", json=_body(idp, **change))

    assert asked.status_code == 202, asked.text
    assert asked.json()["params"]["replaces_sha256"] is not None
    assert admin(tenant).get("/api/v1/sso/saml").json() == before  # nothing changed yet
    assert admin(tenant).post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200
    assert admin(tenant).get("/api/v1/sso/saml").json() != before


def test_asking_for_the_configuration_in_force_is_refused(admin, configure, idp, tenant):
    assert configure(tenant).status_code == 200
    again = admin(tenant).put("/api/v1/sso/saml", json=_body(idp))
    assert again.status_code == 409
    assert "nothing to approve" in again.json()["detail"]


def _approved_request(in_tenant, tenant, action, params) -> ApprovalRequest:
    """An approval request as a caller of the service could hold one: asked, and marked approved."""
    maker = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)
    with in_tenant(tenant) as session:
        request = approvals.ask(session, maker, action, params)
        request.status = "approved"
        request.decided_by = uuid.uuid4()
        return request


def test_an_approval_covers_exactly_the_content_asked_for(key_pairs, idp, sp_metadata, in_tenant, tenant):
    """The service itself refuses any content but the approved one: an approval cannot carry another IdP."""
    asked_for = saml_config.SamlSettings(
        idp.metadata(), "eduPersonPrincipalName", None, None, (), True, AccountKind.STAFF
    )
    impostor = IdentityProvider(key_pairs["impostor"], [sp_metadata("alpha")]).metadata()
    approval = _approved_request(
        in_tenant, tenant, SensitiveAction.CONFIGURE_SSO, {"content": saml_config.content(asked_for)}
    )
    checker = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)
    other_contents = [
        replace(asked_for, idp_metadata=impostor),
        replace(asked_for, create_accounts=False),
        replace(asked_for, role_mappings=(saml_config.RoleMapping("title", "x", "patron"),)),
    ]
    for other in other_contents:
        with pytest.raises(ApprovalRequired), in_tenant(tenant) as session:
            saml_config.configure(session, checker, other, approval=approval)
    with pytest.raises(ApprovalRequired), in_tenant(tenant) as session:
        saml_config.configure(session, checker, asked_for)  # no approval at all, even for a first configuration
    policy = _approved_request(
        in_tenant, tenant, SensitiveAction.CHANGE_PASSWORD_POLICY, {"role_class": "staff", "min_length": 14}
    )
    with pytest.raises(ApprovalRequired), in_tenant(tenant) as session:
        saml_config.configure(session, checker, asked_for, approval=policy)  # an approval of something else
    with in_tenant(tenant) as session:
        assert session.get(SamlConfig, tenant.id) is None
        saml_config.configure(session, checker, asked_for, approval=approval)  # the content asked for: applied
        assert session.get(SamlConfig, tenant.id).idp_metadata == idp.metadata()


TAMPERING = {
    # how the row is rewritten: (the answer to the approval, its problem type)
    # The row no longer matches itself:
    "only the metadata": (409, "approval-required"),
    # It does (digest and summary recomputed), but not the digests the audit chain recorded when asked:
    "digest and summary too": (409, "integrity-failure"),
    # Not a configuration at all: a clear refusal, not a 500.
    "nonsense": (422, "invalid-input"),
}


def _swapped_idp(session, params: dict, metadata: str, how: str) -> dict:
    content = {**params["content"], "idp_metadata": metadata}
    if how == "digest and summary too":  # a careful tamperer writes the row as asking for the impostor would
        return saml_config.checked_params(session, SensitiveAction.CONFIGURE_SSO, {"content": content})
    if how == "nonsense":
        return {**params, "content": {**content, "idp_metadata": 5, "create_accounts": "yes"}}
    return {**params, "content": content}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_request_altered_in_the_database_after_it_was_asked_is_not_applied(
    key_pairs, admin, idp, sp_metadata, in_tenant, tenant, how
):
    """Someone with write access to the approval table swaps the reviewed IdP for theirs before approval."""
    asked = admin(tenant).put("/api/v1/sso/saml", json=_body(idp)).json()
    impostor = IdentityProvider(key_pairs["impostor"], [sp_metadata("alpha")])
    with in_tenant(tenant) as session:
        session.execute(
            text("UPDATE approval_requests SET params = CAST(:p AS jsonb) WHERE id = :id"),
            {"p": json.dumps(_swapped_idp(session, asked["params"], impostor.metadata(), how)), "id": asked["id"]},
        )

    refused = admin(tenant).post(f"/api/v1/approvals/{asked['id']}/approve")

    status, problem_type = TAMPERING[how]
    assert refused.status_code == status, refused.text
    assert refused.json()["type"] == f"urn:bookwarden:problem:{problem_type}"
    assert admin(tenant).get("/api/v1/sso/saml").status_code == 404  # nothing applied
    with in_tenant(tenant) as session:
        assert session.get(ApprovalRequest, (tenant.id, uuid.UUID(asked["id"]))).status == "pending"


def test_a_request_made_stale_by_another_approved_change_is_refused(admin, configure, idp, in_tenant, tenant):
    """Two changes asked from the same configuration: approving the second after the first was applied
    would silently overwrite it. It is refused; the configuration applied stays."""
    first = admin(tenant).put("/api/v1/sso/saml", json=_body(idp, create_accounts=False)).json()
    second = admin(tenant).put("/api/v1/sso/saml", json=_body(idp, create_accounts=True)).json()
    assert admin(tenant).post(f"/api/v1/approvals/{second['id']}/approve").status_code == 200

    stale = admin(tenant).post(f"/api/v1/approvals/{first['id']}/approve")

    assert stale.status_code == 409
    assert "has changed since" in stale.json()["detail"]
    assert admin(tenant).get("/api/v1/sso/saml").json()["create_accounts"] is True
    removal = admin(tenant).delete("/api/v1/sso/saml").json()
    assert admin(tenant).post(f"/api/v1/approvals/{removal['id']}/approve").status_code == 200
    # A removal asked for one configuration does not remove another one either.
    assert configure(tenant).status_code == 200
    late = admin(tenant).delete("/api/v1/sso/saml").json()
    assert configure(tenant, create_accounts=False).status_code == 200
    assert admin(tenant).post(f"/api/v1/approvals/{late['id']}/approve").status_code == 409
    assert admin(tenant).get("/api/v1/sso/saml").status_code == 200


def test_a_mapped_role_that_gained_access_control_powers_since_the_request_is_refused_at_approval(
    admin, client_for, idp, tenant
):
    """Asked with a harmless custom role; the role then gets roles.assign: approving would let the IdP
    hand out access control. The approval re-checks the content and refuses."""
    roles = client_for(tenant, permissions={Permission.ROLES_MANAGE})
    assert roles.post("/api/v1/roles", json={"name": "desk_lead", "permissions": ["loans.read"]}).status_code == 201
    mapping = [{"attribute": "title", "value": "lead", "role": "desk_lead"}]
    asked = admin(tenant).put("/api/v1/sso/saml", json=_body(idp, role_mappings=mapping))
    assert asked.status_code == 202, asked.text
    grown = roles.put("/api/v1/roles/desk_lead/permissions", json={"permissions": ["loans.read", "roles.assign"]})
    assert grown.status_code == 202, grown.text  # administrative now: applied when a second person approves
    checker = client_for(tenant, permissions={Permission.ROLES_MANAGE, Permission.ACCOUNTS_READ})
    assert checker.post(f"/api/v1/approvals/{grown.json()['id']}/approve").status_code == 200

    refused = admin(tenant).post(f"/api/v1/approvals/{asked.json()['id']}/approve")

    assert refused.status_code == 422
    assert "roles.assign" in refused.json()["detail"]
    assert admin(tenant).get("/api/v1/sso/saml").status_code == 404


def test_configuration_needs_the_sso_permission(client_for, tenant):
    client = client_for(tenant, permissions={Permission.ACCOUNTS_MANAGE})
    response = client.put("/api/v1/sso/saml", json={"idp_metadata": "<x/>"})
    assert response.status_code == 403
    assert "sso.manage" in response.json()["detail"]
    assert Permission.SSO_MANAGE in BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]


def _without_certificates(metadata: str) -> str:
    start, end = metadata.index("<ns0:KeyDescriptor"), metadata.index("</ns0:KeyDescriptor>")
    return metadata[:start] + metadata[end + len("</ns0:KeyDescriptor>") :]


BAD_METADATA = {
    "not XML at all": (lambda md: "this is not XML", "does not parse"),
    "no signing certificate": (_without_certificates, "no signing certificate"),
    "an entity bomb": (
        lambda md: '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa">]>' + md.split("?>", 1)[-1],
        "DTDs and entity declarations are refused",
    ),
    "a service provider, not an IdP": (
        lambda md: md.replace("IDPSSODescriptor", "SPSSODescriptor"),
        "no SAML 2.0 identity provider",
    ),
    "signed requests wanted": (
        lambda md: md.replace('WantAuthnRequestsSigned="false"', 'WantAuthnRequestsSigned="true"'),
        "WantAuthnRequestsSigned",
    ),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_is_a_422_naming_the_problem(configure, idp, tenant, admin, case):
    alter, named = BAD_METADATA[case]
    response = configure(tenant, metadata=alter(idp.metadata()))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"].startswith("idp_metadata: ")
    assert named in response.json()["detail"]
    assert admin(tenant).get("/api/v1/sso/saml").status_code == 404  # nothing stored


def _expired(metadata: str) -> str:
    return metadata.replace("<ns0:EntityDescriptor ", '<ns0:EntityDescriptor validUntil="2020-01-01T00:00:00Z" ', 1)


def test_metadata_past_its_validity_is_refused_on_upload_and_stops_sign_in_later(
    browser, admin, configure, idp, in_tenant, tenant
):
    refused = configure(tenant, metadata=_expired(idp.metadata()))
    assert refused.status_code == 422
    assert "validUntil has passed" in refused.json()["detail"]

    assert configure(tenant).status_code == 200
    with in_tenant(tenant) as session:  # time passes: the stored metadata's validUntil is behind us
        session.execute(text("UPDATE saml_configs SET idp_metadata = :m"), {"m": _expired(idp.metadata())})
    assert admin(tenant).get("/api/v1/sso/saml").status_code == 200  # still shown to administrators
    login = browser().get("/api/v1/sso/saml/alpha/login", follow_redirects=False)
    assert login.status_code == 409
    assert "metadata has expired" in login.json()["detail"]


@pytest.mark.parametrize(
    ("role", "named"),
    [
        ("tenant_admin", "administrative role"),
        ("security_officer", "administrative role"),
        # They read the audit trail: administrative by their permissions (access/power.py).
        ("privacy_officer", "administrative role"),
        ("auditor", "administrative role"),
        ("ciso", "platform role"),
    ],
)
def test_roles_that_sign_on_may_not_hand_out_are_refused(configure, tenant, role, named):
    mappings = [{"attribute": "eduPersonAffiliation", "value": "staff", "role": role}]
    response = configure(tenant, role_mappings=mappings)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("role_mappings[0].role: ")
    assert named in response.json()["detail"]


def test_a_mapping_to_a_role_the_institution_does_not_have_is_not_found(configure, tenant):
    response = configure(tenant, role_mappings=[{"attribute": "title", "value": "x", "role": "no_such_role"}])
    assert response.status_code == 404
    assert response.json()["detail"] == "role_mappings[0].role: no role named no_such_role in this institution"


def test_a_custom_role_with_access_control_powers_is_refused(configure, client_for, tenant):
    roles = client_for(tenant, permissions={Permission.ROLES_MANAGE})
    made = roles.post("/api/v1/roles", json={"name": "desk_lead", "permissions": ["roles.assign", "loans.read"]})
    assert made.status_code == 202, made.text  # an administrative role: defined when a second person approves
    checker = client_for(tenant, permissions={Permission.ROLES_MANAGE, Permission.ACCOUNTS_READ})
    assert checker.post(f"/api/v1/approvals/{made.json()['id']}/approve").status_code == 200
    response = configure(tenant, role_mappings=[{"attribute": "title", "value": "lead", "role": "desk_lead"}])
    assert response.status_code == 422
    assert "roles.assign" in response.json()["detail"]


def test_login_refuses_an_address_on_another_site(browser, configure, tenant):
    configure(tenant)
    for target in ("//evil.example/", "/\\evil.example", "https://evil.example/", "/search?q=private"):
        response = browser().get("/api/v1/sso/saml/alpha/login", params={"next": target}, follow_redirects=False)
        assert response.status_code == 422, target


# -- starting a sign-in: throttled per address; abandoned requests purged -------------------


def _request_rows(in_tenant, t) -> int:
    with in_tenant(t) as session:
        return session.execute(text("SELECT count(*) FROM saml_requests")).scalar_one()


def test_a_burst_of_sign_in_starts_from_one_address_is_throttled_and_others_are_not(
    browser, configure, in_tenant, tenant
):
    configure(tenant)
    burst = browser("192.0.2.10")
    for _ in range(throttle.ADDRESS_FREE_FAILURES):
        _start(burst)
    rows = _request_rows(in_tenant, tenant)

    refused = burst.get("/api/v1/sso/saml/alpha/login", follow_redirects=False)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"] == "urn:bookwarden:problem:too-many-attempts"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert _request_rows(in_tenant, tenant) == rows  # refused before anything was written
    # Another browser on the same address waits too (the count is the address's); an unknown institution too.
    assert browser("192.0.2.10").get("/api/v1/sso/saml/nowhere/login", follow_redirects=False).status_code == 429
    (throttled,) = _events(in_tenant, tenant, "auth.sign_in.throttled")  # the unknown one: the platform's chain
    assert throttled["outcome"] == "denied" and throttled["details"] == {"attempt": "saml sign-in start"}
    # Other addresses are not affected, nor is the password sign-in from the throttled address.
    assert browser("192.0.2.11").get("/api/v1/sso/saml/alpha/login", follow_redirects=False).status_code == 303
    password = burst.post("/api/v1/auth/login", json={"institution": "alpha", "username": "x", "password": "y"})
    assert password.status_code == 401


def test_an_ipv6_burst_counts_per_64_network(browser, configure, tenant):
    configure(tenant)
    for host in range(1, throttle.ADDRESS_FREE_FAILURES + 1):
        _start(browser(f"2001:db8:1:2::{host:x}"))  # a fresh address each time, inside one /64
    assert browser("2001:db8:1:2::ff").get("/api/v1/sso/saml/alpha/login").status_code == 429
    assert browser("2001:db8:1:3::1").get("/api/v1/sso/saml/alpha/login", follow_redirects=False).status_code == 303


def test_sign_ins_that_finish_give_their_start_back(browser, idp, configure, tenant):
    """A campus behind one address: people who finish signing in are never slowed, however many."""
    configure(tenant)
    for _ in range(throttle.ADDRESS_FREE_FAILURES + 3):
        client = browser("192.0.2.20")
        response = _post(client, idp.answer(_start(client)))
        assert response.status_code == 303, response.text


def test_the_hourly_purge_removes_expired_sign_on_requests_and_used_assertions(
    db, browser, configure, in_tenant, tenant
):
    configure(tenant)
    for _ in range(3):
        _start(browser())
    with in_tenant(tenant) as session:
        session.execute(
            text(
                "UPDATE saml_requests SET expires_at = now() - interval '1 minute' WHERE relay_state IN "
                "(SELECT relay_state FROM saml_requests ORDER BY created_at, relay_state LIMIT 2)"
            )
        )
        session.execute(
            text(
                "INSERT INTO saml_consumed_assertions (tenant_id, assertion_id, expires_at) VALUES "
                "(:t, 'used-long-ago', now() - interval '1 minute'), "
                "(:t, 'used-just-now', now() + interval '5 minutes')"
            ),
            {"t": tenant.id},
        )

    housekeeping.purge_expired(db)

    with in_tenant(tenant) as session:
        left = session.execute(text("SELECT expires_at > now() FROM saml_requests")).scalars().all()
        used = session.execute(text("SELECT assertion_id FROM saml_consumed_assertions")).scalars().all()
    assert left == [True]  # the live request stays
    assert used == ["used-just-now"]  # still refuses a replay until it expires


# -- real commits: races -------------------------------------------------------------------


def _configured_by_two(database, tenant_id, settings_in: saml_config.SamlSettings) -> None:
    """Sign-on configured as the platform requires: asked by one administrator, approved by another."""
    maker, checker = (
        Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset({Permission.SSO_MANAGE}))
        for _ in range(2)
    )
    with tenant_session(database, tenant_id) as session:
        asked = saml_config.ask_change(session, maker, settings_in)
    with tenant_session(database, tenant_id) as session:
        approvals.approve(session, checker, asked.id)


def _committed_sign_on(committed_db, committed_tenant, settings, key_pairs, mappings=()):
    """An app over really committed data, an institution with sign-on configured, and its IdP."""
    from bookwarden.api.app import create_app

    app = create_app(committed_db, settings)
    tenant_id = committed_tenant()
    with platform_session(committed_db) as session:
        slug = session.get(Tenant, tenant_id).slug
    idp = IdentityProvider(key_pairs["idp"], [_committed_browser(app).get(f"/api/v1/sso/saml/{slug}/metadata").text])
    settings_in = saml_config.SamlSettings(
        idp.metadata(), "eduPersonPrincipalName", None, None, tuple(mappings), True, AccountKind.STAFF
    )
    _configured_by_two(committed_db, tenant_id, settings_in)
    return app, tenant_id, slug, idp


def _committed_browser(app):
    from fastapi.testclient import TestClient

    address = (fresh_address(), 50000)
    return TestClient(app, base_url="https://testserver", client=address, raise_server_exceptions=False)


def test_one_answer_posted_twice_at_once_signs_in_once(committed_db, committed_tenant, settings, key_pairs):
    """Two posts racing with the same answer (a double submit, or a thief racing the browser):
    the request is taken by one of them only, with real commits and two connections."""
    app, tenant_id, slug, idp = _committed_sign_on(committed_db, committed_tenant, settings, key_pairs)
    browsers = [_committed_browser(app) for _ in range(2)]
    answer = idp.answer(_start(browsers[0], slug))
    acs_path = f"/api/v1/sso/saml/{slug}/acs"
    browsers[1].cookies.set(saml.BROWSER_COOKIE, browsers[0].cookies.get(saml.BROWSER_COOKIE), path=acs_path)

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda b: _post(b, answer, slug=slug).status_code, browsers))

    assert statuses == [303, 401]
    with tenant_session(committed_db, tenant_id) as session:
        assert session.execute(text("SELECT count(*) FROM sessions")).scalar_one() == 1
        assert session.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1


STAFF_MAPPING = (saml_config.RoleMapping("eduPersonAffiliation", "staff", "circulation_staff"),)
NOT_STAFF = {**STAFF, "eduPersonAffiliation": ["member"]}
RACES = {
    # case: (the account before, what the IdP asserts, the roles after, the event only the first records,
    #        how many look-ups: a new username's loser runs again; an existing account's waits on its row lock)
    "first sign-in of a new username": (None, STAFF, ["circulation_staff"], "account.created", 3),
    "a role gained by an existing account": ([], STAFF, ["circulation_staff"], "role.granted", 2),
    "a role lost by an existing account": (["circulation_staff"], NOT_STAFF, [], "role.revoked", 2),
}


@pytest.mark.parametrize("case", list(RACES))
def test_two_simultaneous_sign_ins_of_one_person_both_end_signed_in_as_one_account(
    committed_db, committed_tenant, settings, key_pairs, monkeypatch, case
):
    """Two tabs finish signing in at the same moment. Both look the username up before either writes
    (a barrier holds each until the other has looked). A new username: both create the account, the
    unique index lets one commit, and the other, instead of a 500, runs again and signs in as the account
    the first one committed. An existing account: the second waits for the first and grants or revokes
    nothing twice. Real commits, two threads, two connections."""
    app, tenant_id, slug, idp = _committed_sign_on(committed_db, committed_tenant, settings, key_pairs, STAFF_MAPPING)
    before, identity, roles_after, first_only, lookups_expected = RACES[case]
    if before is not None:
        with tenant_session(committed_db, tenant_id) as session:
            maker = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, ADMIN)
            account = accounts.create_account(session, maker, kind=AccountKind.STAFF, username="jdoe@alpha.example")
            account.status = AccountStatus.ACTIVE
            for role in before:  # as an earlier sign-in granted it
                access.grant_role(session, saml.identity_provider(tenant_id), account.id, role)
    with tenant_session(committed_db, tenant_id) as session:
        events_before = session.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
    browsers = [_committed_browser(app) for _ in range(2)]
    answers = [idp.answer(_start(b, slug), identity) for b in browsers]

    real_lookup, lookups = accounts.find_by_username, itertools.count()
    both_looked = threading.Barrier(2, timeout=20)

    def look_up_then_wait(session, username):
        found = real_lookup(session, username)
        if next(lookups) < 2:  # the first look-up of each sign-in; a run after a lost race goes straight on
            both_looked.wait()
        return found

    monkeypatch.setattr(saml.accounts, "find_by_username", look_up_then_wait)
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda pair: _post(pair[0], pair[1], slug=slug), zip(browsers, answers, strict=True)))

    assert [r.status_code for r in responses] == [303, 303], [r.text for r in responses]
    signed_in_as = {r.json()["account_id"] for r in responses}
    assert len(signed_in_as) == 1
    assert next(lookups) == lookups_expected
    with tenant_session(committed_db, tenant_id) as session:
        assert session.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1
        assert session.execute(text("SELECT count(*) FROM sessions WHERE revoked_at IS NULL")).scalar_one() == 2
        assert access.held_roles(session, uuid.UUID(signed_in_as.pop())) == roles_after
        actions = (
            session.execute(text("SELECT action FROM audit_events WHERE seq > :n"), {"n": events_before})
            .scalars()
            .all()
        )
    assert actions.count("auth.sign_in.succeeded") == 2
    assert actions.count(first_only) == 1  # nothing done twice, and a lost run left nothing behind
    assert "auth.sign_in.failed" not in actions
    for client in browsers:
        assert client.get("/api/v1/auth/me").status_code == 200


def test_a_sign_in_that_cannot_settle_after_concurrent_ones_is_a_clean_retryable_refusal(
    committed_db, committed_tenant, settings, key_pairs, monkeypatch
):
    """With no second run allowed, the loser of a first sign-in race gets 409 concurrent-sign-in (audited),
    never a 500, and signs in by starting again."""
    app, tenant_id, slug, idp = _committed_sign_on(committed_db, committed_tenant, settings, key_pairs)
    monkeypatch.setattr(saml, "_ATTEMPTS", 1)
    browsers = [_committed_browser(app) for _ in range(2)]
    answers = [idp.answer(_start(b, slug)) for b in browsers]
    real_lookup, both_looked = accounts.find_by_username, threading.Barrier(2, timeout=20)

    def look_up_then_wait(session, username):
        found = real_lookup(session, username)
        both_looked.wait()
        return found

    monkeypatch.setattr(saml.accounts, "find_by_username", look_up_then_wait)
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda pair: _post(pair[0], pair[1], slug=slug), zip(browsers, answers, strict=True)))
    monkeypatch.setattr(saml.accounts, "find_by_username", real_lookup)

    assert sorted(r.status_code for r in responses) == [303, 409]
    (lost,) = [r for r in responses if r.status_code == 409]
    assert lost.json()["type"] == "urn:bookwarden:problem:saml-sign-in-refused"
    assert "start again" in lost.json()["detail"]
    loser = browsers[responses.index(lost)]
    with tenant_session(committed_db, tenant_id) as session:
        reasons = (
            session.execute(text("SELECT details->>'reason' FROM audit_events WHERE action = 'auth.sign_in.failed'"))
            .scalars()
            .all()
        )
    assert reasons == [Refusal.CONCURRENT_SIGN_IN.value]
    again = _post(loser, idp.answer(_start(loser, slug)), slug=slug)
    assert again.status_code == 303
    assert again.json()["account_id"] == next(r for r in responses if r.status_code == 303).json()["account_id"]
