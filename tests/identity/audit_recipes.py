"""Audit-coverage recipes of the identity area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.permissions import BuiltinRole, Permission
from bookwarden.db.session import tenant_session
from bookwarden.identity import links
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.tokens import service as tokens
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.helpers import grant
from tests.identity.test_mfa import SoftwareAuthenticator
from tests.invariants.audit_coverage import (
    NEW_PASSWORD,
    OPERATOR_AUTH,
    OPERATOR_PASSWORD,
    PASSWORD,
    Call,
    Command,
    command,
    route,
)


@route("POST", "/api/v1/auth/login")
def _(w):
    w.account("lena")
    body = {"institution": w.tenant.slug, "username": "lena", "password": PASSWORD}
    return Call(w.browser(), "POST", "/api/v1/auth/login", Action.SIGN_IN_SUCCEEDED, w.tenant.id, json=body)


@route("POST", "/api/v1/auth/mfa")
def _(w):
    secret = pyotp.random_base32()
    w.account("lena", totp=secret)
    client = w.browser()
    assert w.login(client, "lena")["mfa_required"] is True
    body = {"code": pyotp.TOTP(secret).now()}
    return Call(client, "POST", "/api/v1/auth/mfa", Action.MFA_PASSED, w.tenant.id, json=body)


@route("POST", "/api/v1/auth/logout")
def _(w):
    return Call(w.signed_in("lena"), "POST", "/api/v1/auth/logout", Action.SIGNED_OUT, w.tenant.id)


@route("POST", "/api/v1/auth/logout-everywhere")
def _(w):
    client = w.signed_in("lena")
    return Call(client, "POST", "/api/v1/auth/logout-everywhere", Action.SIGNED_OUT_EVERYWHERE, w.tenant.id)


@route("GET", "/api/v1/auth/me")
def _(w):
    return Call(w.staff, "GET", "/api/v1/auth/me", Action.SESSION_VIEWED, w.tenant.id)


# accounts (administrators) and one-time links

ACCOUNTS = "/api/v1/accounts"


@route("POST", ACCOUNTS)
def _(w):
    body = {"kind": "staff", "username": "nova", "email": "nova@alpha.example"}
    return Call(w.admin, "POST", ACCOUNTS, Action.ACCOUNT_CREATED, w.tenant.id, json=body)


@route("GET", ACCOUNTS)
def _(w):
    w.account("lena")
    return Call(w.admin, "GET", ACCOUNTS, Action.ACCOUNT_LISTED, w.tenant.id)


@route("GET", f"{ACCOUNTS}/{{account_id}}")
def _(w):
    return Call(w.admin, "GET", f"{ACCOUNTS}/{w.account('lena').id}", Action.ACCOUNT_VIEWED, w.tenant.id)


@route("POST", f"{ACCOUNTS}/{{account_id}}/disable")
def _(w):
    return Call(w.admin, "POST", f"{ACCOUNTS}/{w.account('lena').id}/disable", Action.ACCOUNT_DISABLED, w.tenant.id)


@route("POST", f"{ACCOUNTS}/{{account_id}}/enable")
def _(w):
    account = w.account("lena")
    assert w.admin.post(f"{ACCOUNTS}/{account.id}/disable").status_code == 200
    return Call(w.admin, "POST", f"{ACCOUNTS}/{account.id}/enable", Action.ACCOUNT_ENABLED, w.tenant.id)


@route("DELETE", f"{ACCOUNTS}/{{account_id}}")
def _(w):
    return Call(w.admin, "DELETE", f"{ACCOUNTS}/{w.account('lena').id}", Action.ACCOUNT_DELETED, w.tenant.id)


@route("POST", f"{ACCOUNTS}/{{account_id}}/invitation")
def _(w):
    url = f"{ACCOUNTS}/{w.account('nova', active=False).id}/invitation"
    return Call(w.admin, "POST", url, Action.ACCOUNT_INVITED, w.tenant.id)


@route("POST", f"{ACCOUNTS}/{{account_id}}/password-reset")
def _(w):
    url = f"{ACCOUNTS}/{w.account('lena').id}/password-reset"
    return Call(w.admin, "POST", url, Action.PASSWORD_RESET_REQUESTED, w.tenant.id)


@route("POST", f"{ACCOUNTS}/{{account_id}}/mfa-reset")
def _(w):
    url = f"{ACCOUNTS}/{w.account('lena', totp=pyotp.random_base32()).id}/mfa-reset"
    return Call(w.admin, "POST", url, Action.MFA_RESET, w.tenant.id)


@route("POST", "/api/v1/auth/accept-invitation")
def _(w):
    body = {"token": w.link(links.LinkPurpose.INVITE, w.account("nova", active=False)), "password": NEW_PASSWORD}
    return Call(w.browser(), "POST", "/api/v1/auth/accept-invitation", Action.ACCOUNT_ACTIVATED, w.tenant.id, json=body)


@route("POST", "/api/v1/auth/password-reset")
def _(w):
    w.account("lena")
    body = {"institution": w.tenant.slug, "username": "lena"}
    url = "/api/v1/auth/password-reset"
    return Call(w.browser(), "POST", url, Action.PASSWORD_RESET_REQUESTED, w.tenant.id, json=body)


@route("POST", "/api/v1/auth/reset-password")
def _(w):
    body = {"token": w.link(links.LinkPurpose.RESET, w.account("lena")), "password": NEW_PASSWORD}
    return Call(w.browser(), "POST", "/api/v1/auth/reset-password", Action.PASSWORD_RESET, w.tenant.id, json=body)


# one's own second factors

ME_MFA = "/api/v1/auth/me/mfa"


@route("POST", f"{ME_MFA}/totp")
def _(w):
    return Call(w.signed_in("lena"), "POST", f"{ME_MFA}/totp", Action.MFA_ENROLMENT_STARTED, w.tenant.id)


@route("POST", f"{ME_MFA}/totp/confirm")
def _(w):
    client = w.signed_in("lena")
    started = client.post(f"{ME_MFA}/totp")
    assert started.status_code == 201, started.text
    body = {"code": pyotp.TOTP(started.json()["secret"]).now()}
    return Call(client, "POST", f"{ME_MFA}/totp/confirm", Action.MFA_ENROLLED, w.tenant.id, json=body)


@route("DELETE", f"{ME_MFA}/totp")
def _(w):
    client = w.signed_in("lena")
    w.with_app(client)
    return Call(client, "DELETE", f"{ME_MFA}/totp", Action.MFA_REMOVED, w.tenant.id)


@route("POST", f"{ME_MFA}/recovery-codes")
def _(w):
    client = w.signed_in("lena")
    w.with_app(client)
    return Call(client, "POST", f"{ME_MFA}/recovery-codes", Action.RECOVERY_CODES_REGENERATED, w.tenant.id)


@route("POST", f"{ME_MFA}/webauthn/options")
def _(w):
    return Call(w.signed_in("lena"), "POST", f"{ME_MFA}/webauthn/options", Action.MFA_ENROLMENT_STARTED, w.tenant.id)


@route("POST", f"{ME_MFA}/webauthn/credentials")
def _(w):
    from tests.identity.test_mfa_enrolment import ORIGIN

    client = w.signed_in("lena")
    options = client.post(f"{ME_MFA}/webauthn/options")
    assert options.status_code == 200, options.text
    credential = SoftwareAuthenticator().create(json.dumps(options.json()["options"]), origin=ORIGIN)
    body = {"credential": credential, "name": "Blue key"}
    return Call(client, "POST", f"{ME_MFA}/webauthn/credentials", Action.MFA_ENROLLED, w.tenant.id, json=body)


@route("GET", f"{ME_MFA}/webauthn/credentials")
def _(w):
    client = w.signed_in("lena")
    w.with_key(client)
    return Call(client, "GET", f"{ME_MFA}/webauthn/credentials", Action.MFA_VIEWED, w.tenant.id)


@route("PATCH", f"{ME_MFA}/webauthn/credentials/{{key_id}}")
def _(w):
    client = w.signed_in("lena")
    _, key_id = w.with_key(client)
    url = f"{ME_MFA}/webauthn/credentials/{key_id}"
    return Call(client, "PATCH", url, Action.MFA_CHANGED, w.tenant.id, json={"name": "Red key"})


@route("DELETE", f"{ME_MFA}/webauthn/credentials/{{key_id}}")
def _(w):
    client = w.signed_in("lena")
    _, key_id = w.with_key(client)
    return Call(client, "DELETE", f"{ME_MFA}/webauthn/credentials/{key_id}", Action.MFA_REMOVED, w.tenant.id)


@route("POST", "/api/v1/auth/mfa/webauthn/options")
def _(w):
    client, _ = w.pending_key_sign_in("lena")
    return Call(client, "POST", "/api/v1/auth/mfa/webauthn/options", Action.MFA_CHALLENGED, w.tenant.id)


@route("POST", "/api/v1/auth/mfa/webauthn")
def _(w):
    from tests.identity.test_mfa_enrolment import ORIGIN

    client, key = w.pending_key_sign_in("lena")
    options = client.post("/api/v1/auth/mfa/webauthn/options")
    assert options.status_code == 200, options.text
    body = {"credential": key.get(json.dumps(options.json()["options"]), origin=ORIGIN)}
    return Call(client, "POST", "/api/v1/auth/mfa/webauthn", Action.MFA_PASSED, w.tenant.id, json=body)


# the trail itself, and usage


# institutional sign-on (the identity provider of tests/e2e/test_saml.py)

SSO = "/api/v1/sso/saml"


@route("PUT", SSO)
def _(w):
    provider = w.request.getfixturevalue("idp")
    body = {"idp_metadata": provider.metadata(), "role_mappings": MAPPINGS, "create_accounts": True}
    return Call(w.admin, "PUT", SSO, Action.APPROVAL_REQUESTED, w.tenant.id, json=body)  # applied once approved


@route("GET", SSO)
def _(w):
    w.saml_configured()
    return Call(w.admin, "GET", SSO, Action.SSO_VIEWED, w.tenant.id)


@route("DELETE", SSO)
def _(w):
    w.saml_configured()
    return Call(w.admin, "DELETE", SSO, Action.APPROVAL_REQUESTED, w.tenant.id)  # applied once approved


@route("GET", f"{SSO}/{{tenant_slug}}/metadata")
def _(w):
    return Call(w.browser(), "GET", f"{SSO}/{w.tenant.slug}/metadata", None, w.tenant.id)


@route("GET", f"{SSO}/{{tenant_slug}}/login")
def _(w):
    w.saml_configured()
    return Call(w.browser(), "GET", f"{SSO}/{w.tenant.slug}/login", None, w.tenant.id)


@route("POST", f"{SSO}/{{tenant_slug}}/acs")
def _(w):
    w.saml_configured()
    client = w.browser()
    answer = w.request.getfixturevalue("idp").answer(_start(client, slug=w.tenant.slug))
    form = {"SAMLResponse": answer.saml_response, "RelayState": answer.relay_state}
    return Call(client, "POST", f"{SSO}/{w.tenant.slug}/acs", Action.SIGN_IN_SUCCEEDED, w.tenant.id, data=form)


@route("POST", f"{ACCOUNTS}/{{account_id}}/mfa-enrolment-link")
def _(w):
    url = f"{ACCOUNTS}/{w.account('lena').id}/mfa-enrolment-link"
    return Call(w.admin, "POST", url, Action.MFA_ENROLMENT_LINK_SENT, w.tenant.id)


def _enrolment_token(w, username: str) -> str:
    """The token of an administrator's enrolment link mailed to a new account without a factor."""
    account = w.account(username)
    with tenant_session(w.db, w.tenant.id) as session:
        enrolment_links.send_link(session, w.db.master, w.as_admin(), account.id)
    with tenant_session(w.db, w.tenant.id) as session:
        bodies = [open_mail(session, row).body for row in session.scalars(select(OutboxMessage))]
    return next(b for b in bodies if "#token=" in b).split("#token=", 1)[1].split()[0]


@route("POST", "/api/v1/auth/mfa-enrolment")
def _(w):
    body = {"token": _enrolment_token(w, "lena"), "password": PASSWORD}
    return Call(w.browser(), "POST", "/api/v1/auth/mfa-enrolment", Action.MFA_ENROLMENT_STARTED, w.tenant.id, json=body)


@route("POST", "/api/v1/auth/mfa-enrolment/confirm")
def _(w):
    client = w.browser()
    begun = client.post("/api/v1/auth/mfa-enrolment", json={"token": _enrolment_token(w, "lena"), "password": PASSWORD})
    assert begun.status_code == 201, begun.text
    body = {"code": pyotp.TOTP(begun.json()["secret"]).now()}
    return Call(client, "POST", "/api/v1/auth/mfa-enrolment/confirm", Action.MFA_ENROLLED, w.tenant.id, json=body)


def _operator_link(w) -> str:
    return w.operator_link()


def _operator_enrolled(w) -> pyotp.TOTP:
    return w.operator_enrolled()


def _operator_pending(w) -> tuple[TestClient, pyotp.TOTP]:
    return w.operator_pending()


def _operator_signed_in(w) -> TestClient:
    return w.operator_signed_in()


@route("POST", f"{OPERATOR_AUTH}/enrolment")
def _(w):
    body, url = {"token": _operator_link(w)}, f"{OPERATOR_AUTH}/enrolment"
    return Call(w.browser(), "POST", url, Action.MFA_ENROLMENT_STARTED, PLATFORM_CHAIN, json=body)


@route("POST", f"{OPERATOR_AUTH}/enrolment/complete")
def _(w):
    token, client = _operator_link(w), w.browser()
    totp = pyotp.TOTP(client.post(f"{OPERATOR_AUTH}/enrolment", json={"token": token}).json()["secret"])
    body = {"token": token, "password": OPERATOR_PASSWORD, "code": totp.now()}
    url = f"{OPERATOR_AUTH}/enrolment/complete"
    return Call(client, "POST", url, Action.OPERATOR_ACCOUNT_ENROLLED, PLATFORM_CHAIN, json=body)


@route("POST", f"{OPERATOR_AUTH}/login")
def _(w):
    _operator_enrolled(w)
    body = {"username": "olga.ops", "password": OPERATOR_PASSWORD}
    return Call(w.browser(), "POST", f"{OPERATOR_AUTH}/login", Action.SIGN_IN_SUCCEEDED, PLATFORM_CHAIN, json=body)


@route("POST", f"{OPERATOR_AUTH}/mfa")
def _(w):
    client, totp = _operator_pending(w)
    return Call(client, "POST", f"{OPERATOR_AUTH}/mfa", Action.MFA_PASSED, PLATFORM_CHAIN, json={"code": totp.now()})


@route("POST", f"{OPERATOR_AUTH}/logout")
def _(w):
    return Call(_operator_signed_in(w), "POST", f"{OPERATOR_AUTH}/logout", Action.SIGNED_OUT, PLATFORM_CHAIN)


@route("GET", f"{OPERATOR_AUTH}/me")
def _(w):
    return Call(_operator_signed_in(w), "GET", f"{OPERATOR_AUTH}/me", Action.SESSION_VIEWED, PLATFORM_CHAIN)


# API tokens (identity/tokens): the institution's under tokens.manage, each person's own

TOKENS, MY_TOKENS, OPERATOR_TOKENS = "/api/v1/tokens", "/api/v1/auth/me/tokens", f"{OPERATOR_AUTH}/me/tokens"


def _staff_signed_in(w) -> TestClient:
    """A circulation desk account, signed in (no second factor needed for its ordinary role)."""
    account = w.account("lena")
    with tenant_session(w.db, w.tenant.id) as session:
        grant(session, w.tenant.id, account.id, BuiltinRole.CIRCULATION_STAFF)
    client = w.browser()
    assert w.login(client, "lena")["mfa_required"] is False
    return client


def _own_token(client: TestClient, url: str, permissions: list[str]) -> str:
    minted = client.post(url, json={"name": "script", "permissions": permissions})
    assert minted.status_code == 201, minted.text
    return minted.json()["id"]


def _service_token(w) -> str:
    with tenant_session(w.db, w.tenant.id) as session:
        return str(tokens.issue_api_token(session, "sync", [Permission.PATRONS_READ], timedelta(days=1))[0].id)


@route("GET", TOKENS)
def _(w):
    _service_token(w)
    return Call(w.admin, "GET", TOKENS, Action.TOKEN_LISTED, w.tenant.id)


@route("POST", f"{TOKENS}/{{token_id}}/revoke")
def _(w):
    return Call(w.admin, "POST", f"{TOKENS}/{_service_token(w)}/revoke", Action.TOKEN_REVOKED, w.tenant.id)


@route("GET", MY_TOKENS)
def _(w):
    return Call(_staff_signed_in(w), "GET", MY_TOKENS, Action.TOKEN_LISTED, w.tenant.id)


@route("POST", MY_TOKENS)
def _(w):
    body = {"name": "desk scanner", "permissions": ["patrons.read"], "days": 30}
    return Call(_staff_signed_in(w), "POST", MY_TOKENS, Action.TOKEN_ISSUED, w.tenant.id, json=body)


@route("POST", f"{MY_TOKENS}/{{token_id}}/revoke")
def _(w):
    client = _staff_signed_in(w)
    url = f"{MY_TOKENS}/{_own_token(client, MY_TOKENS, ['patrons.read'])}/revoke"
    return Call(client, "POST", url, Action.TOKEN_REVOKED, w.tenant.id)


@route("GET", OPERATOR_TOKENS)
def _(w):
    return Call(w.operator_signed_in(), "GET", OPERATOR_TOKENS, Action.TOKEN_LISTED, PLATFORM_CHAIN)


@route("POST", OPERATOR_TOKENS)
def _(w):
    body = {"name": "provisioning", "permissions": ["platform.tenants.manage"], "hours": 8}
    return Call(w.operator_signed_in(), "POST", OPERATOR_TOKENS, Action.TOKEN_ISSUED, PLATFORM_CHAIN, json=body)


@route("POST", f"{OPERATOR_TOKENS}/{{token_id}}/revoke")
def _(w):
    client = w.operator_signed_in()
    url = f"{OPERATOR_TOKENS}/{_own_token(client, OPERATOR_TOKENS, ['platform.tenants.manage'])}/revoke"
    return Call(client, "POST", url, Action.TOKEN_REVOKED, PLATFORM_CHAIN)


@command("token", "create")
def _(c):
    return Command(["token", "create", "--days", "1"], Action.TOKEN_ISSUED, PLATFORM_CHAIN)


@command("token", "list")
def _(c):
    return Command(["token", "list", "--tenant", "north"], Action.TOKEN_LISTED, c.tenant())


@command("token", "revoke")
def _(c):
    tenant_id = c.tenant()
    with tenant_session(c.db, tenant_id) as session:
        token_id = tokens.issue_api_token(session, "sync", [Permission.PATRONS_READ], timedelta(days=1))[0].id
    return Command(["token", "revoke", str(token_id), "--tenant", "north"], Action.TOKEN_REVOKED, tenant_id)


@command("operator", "create")
def _(c):
    c.as_role("ciso")  # operator accounts are the CISO's to run
    args = ["operator", "create", "olga.ops", "--role", "operator_ops"]
    return Command(args, Action.OPERATOR_ACCOUNT_CREATED, PLATFORM_CHAIN)


@command("operator", "enrolment-link")
def _(c):
    c.as_role("ciso")  # operator accounts are the CISO's to run
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    return Command(["operator", "enrolment-link", "olga.ops"], Action.OPERATOR_ENROLMENT_LINK_ISSUED, PLATFORM_CHAIN)


@command("operator", "disable")
def _(c):
    c.as_role("ciso")  # operator accounts are the CISO's to run
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    return Command(["operator", "disable", "olga.ops"], Action.OPERATOR_ACCOUNT_DISABLED, PLATFORM_CHAIN)


@command("operator", "enable")
def _(c):
    c.as_role("ciso")  # operator accounts are the CISO's to run
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    c.run("operator", "disable", "olga.ops")
    return Command(["operator", "enable", "olga.ops"], Action.OPERATOR_ACCOUNT_ENABLED, PLATFORM_CHAIN)


@command("operator", "list")
def _(c):
    c.as_role("ciso")  # operator accounts are the CISO's to run
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    return Command(["operator", "list"], Action.OPERATOR_ACCOUNT_LISTED, PLATFORM_CHAIN)
