"""API tokens as people use and abuse them, over HTTP and at the console, against the real PostgreSQL.

A token belongs to a person and acts for them: it cannot approve what its owner asked (nor the other way
round), it never does more than its owner may do now, it ends when its owner is disabled, it lives no
longer than its power class allows, and its owner (or a holder of tokens.manage) lists and revokes it.
Operator tokens are minted only by an operator signed in with a second factor, and break-glass is never
held by a token.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from bookwarden.access.approvals.models import ApprovalRequest
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.core.config import get_settings
from bookwarden.core.errors import Forbidden, InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind, AccountStatus, ApiToken, OperatorToken
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.identity.tokens import service as tokens
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.helpers import acting, grant, stored_hash
from tests.identity.test_operator_accounts import PASSWORD as OPERATOR_PASSWORD
from tests.identity.test_operator_accounts import create, enrolled, signed_in  # noqa: F401 - fixtures

PASSWORD = "violet tractor mango 42 harbour"
ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
ME = "/api/v1/auth/me/tokens"
OPERATOR_ME = "/api/v1/operator/auth/me/tokens"
PROBLEM = "urn:bookwarden:problem:"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _setup(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)


@pytest.fixture
def person(in_tenant, tenant, browser):
    """person(username, role) -> (account id, a browser signed in as them, second factor passed if needed)."""
    with in_tenant(tenant) as session:
        add_security_contact(session, "soc@alpha.example")

    def make(username: str, role: BuiltinRole = BuiltinRole.CIRCULATION_STAFF):
        secret = pyotp.random_base32()
        with in_tenant(tenant) as session:
            account = accounts.create_account(
                session, _setup(tenant), kind=AccountKind.STAFF, username=username, email=f"{username}@alpha.example"
            )
            account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
            account.status = AccountStatus.ACTIVE
            key = session.keyring.subject_key(tenant.id, account.id)
            account.totp_secret = encrypt_field(key, tenant.id, "accounts", "totp_secret", account.id, secret)
            session.flush()
            grant(session, tenant.id, account.id, role)
        client = browser()
        body = {"institution": tenant.slug, "username": username, "password": PASSWORD}
        assert client.post("/api/v1/auth/login", json=body).json()["mfa_required"] is True
        passed = client.post("/api/v1/auth/mfa", json={"code": pyotp.TOTP(secret).now()})
        assert passed.status_code == 200, passed.text
        return account.id, client

    return make


def _mint(client: TestClient, permissions, **body) -> dict:
    minted = client.post(ME, json={"name": "laptop script", "permissions": sorted(permissions), **body})
    assert minted.status_code == 201, minted.text
    return minted.json()


def _bearer(app, secret: str) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {secret}"
    return client


def _token(app, client: TestClient, permissions, **body) -> tuple[dict, TestClient]:
    minted = _mint(client, permissions, **body)
    return minted, _bearer(app, minted["token"])


def _ask_admin_role_for(client: TestClient, in_tenant, tenant) -> str:
    with in_tenant(tenant) as session:
        candidate = accounts.create_account(
            session, _setup(tenant), kind=AccountKind.STAFF, username=f"cand-{uuid.uuid4().hex[:6]}"
        )
    asked = client.post(f"/api/v1/accounts/{candidate.id}/roles", json={"role": "tenant_admin"})
    assert asked.status_code == 202, asked.text
    return asked.json()["id"]


def _status(in_tenant, tenant, approval_id) -> str:
    with in_tenant(tenant) as session:
        return session.get(ApprovalRequest, (tenant.id, uuid.UUID(approval_id))).status


# -- maker-checker between people -----------------------------------------------------------------------


def test_a_token_cannot_approve_what_its_owner_asked_through_a_session(app, person, in_tenant, tenant):
    ann, ann_browser = person("ann", BuiltinRole.TENANT_ADMIN)
    _, bob_browser = person("bob", BuiltinRole.TENANT_ADMIN)
    approval = _ask_admin_role_for(ann_browser, in_tenant, tenant)

    minted, ann_token = _token(app, ann_browser, {Permission.ROLES_ASSIGN, Permission.ACCOUNTS_READ})
    assert minted["owner_id"] == str(ann) and minted["power_class"] == "administrative"
    for verb in ("approve", "reject"):
        refused = ann_token.post(f"/api/v1/approvals/{approval}/{verb}")
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"] == PROBLEM + "segregation-of-duties"
    assert _status(in_tenant, tenant, approval) == "pending"

    approved = bob_browser.post(f"/api/v1/approvals/{approval}/approve")
    assert approved.status_code == 200 and approved.json()["decided_by_person"] is not None


def test_the_owners_session_and_other_tokens_cannot_approve_what_their_token_asked(app, person, in_tenant, tenant):
    ann, ann_browser = person("ann", BuiltinRole.TENANT_ADMIN)
    _, bob_browser = person("bob", BuiltinRole.TENANT_ADMIN)
    _, asking = _token(app, ann_browser, {Permission.ROLES_ASSIGN, Permission.ACCOUNTS_READ})
    _, second = _token(app, ann_browser, {Permission.ROLES_ASSIGN, Permission.ACCOUNTS_READ})
    approval = _ask_admin_role_for(asking, in_tenant, tenant)
    asked = ann_browser.get("/api/v1/approvals").json()
    assert [a["requested_by_person"] for a in asked if a["id"] == approval] == [str(ann)]

    for decider in (ann_browser, second, asking):
        refused = decider.post(f"/api/v1/approvals/{approval}/approve")
        assert refused.status_code == 409 and refused.json()["type"] == PROBLEM + "segregation-of-duties"
    assert _status(in_tenant, tenant, approval) == "pending"

    _, bob_token = _token(app, bob_browser, {Permission.ROLES_ASSIGN, Permission.ACCOUNTS_READ})
    assert bob_token.post(f"/api/v1/approvals/{approval}/approve").json()["status"] == "approved"


def test_nobody_assigns_themselves_a_role_through_their_token(app, person, tenant):
    ann, ann_browser = person("ann", BuiltinRole.TENANT_ADMIN)
    _, ann_token = _token(app, ann_browser, {Permission.ROLES_ASSIGN})
    refused = ann_token.post(f"/api/v1/accounts/{ann}/roles", json={"role": "auditor"})
    assert refused.status_code == 409 and refused.json()["type"] == PROBLEM + "segregation-of-duties"


# -- a token acts for its owner, never for more --------------------------------------------------------


def test_a_disabled_accounts_tokens_and_sessions_are_refused_at_once(app, db, person, in_tenant, tenant):
    cy, cy_browser = person("cy")
    _, admin_browser = person("ann", BuiltinRole.TENANT_ADMIN)
    minted, cy_token = _token(app, cy_browser, LIBRARY_READ)
    assert cy_token.get("/api/v1/patrons").status_code == 200
    assert cy_browser.get("/api/v1/patrons").status_code == 200

    assert admin_browser.post(f"/api/v1/accounts/{cy}/disable").status_code == 200

    assert cy_token.get("/api/v1/patrons").status_code == 401
    assert cy_browser.get("/api/v1/patrons").status_code == 401
    with in_tenant(tenant) as session:
        row = session.get(ApiToken, (tenant.id, uuid.UUID(minted["id"])))
        assert row.revoked_at is not None
        details = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'account.disabled' ORDER BY seq DESC LIMIT 1")
        ).scalar_one()
    assert (details["sessions_ended"], details["tokens_revoked"]) == (1, 1)


def test_a_token_whose_owner_is_no_longer_active_is_refused_even_unrevoked(app, person, in_tenant, tenant):
    """Defence in depth: each use checks the owner, so no path that forgets to revoke leaves a token working."""
    cy, cy_browser = person("cy")
    _, cy_token = _token(app, cy_browser, LIBRARY_READ)
    with in_tenant(tenant) as session:
        session.execute(text("UPDATE accounts SET status = 'disabled' WHERE id = :i"), {"i": cy})
    answer = cy_token.get("/api/v1/patrons")
    assert answer.status_code == 401 and "unknown, expired or revoked" in answer.json()["detail"]


def test_a_token_does_no_more_than_its_owner_may_do_now(app, person, in_tenant, tenant):
    cy, cy_browser = person("cy")
    _, cy_token = _token(app, cy_browser, {Permission.PATRONS_READ, Permission.PATRONS_WRITE})
    assert cy_token.post("/api/v1/patrons", json={"name": "Written by token"}).status_code == 201
    with in_tenant(tenant) as session:
        from bookwarden.identity import roles as access

        access.revoke_role(session, _setup(tenant), cy, BuiltinRole.CIRCULATION_STAFF)
    assert cy_token.post("/api/v1/patrons", json={"name": "Again"}).status_code == 403
    assert cy_token.get("/api/v1/patrons").status_code == 403


def test_a_token_never_carries_more_than_its_owner_holds_and_never_mints_a_token(app, person, tenant):
    _, cy_browser = person("cy")
    beyond = cy_browser.post(ME, json={"name": "escalate", "permissions": ["patrons.read", "roles.assign"]})
    assert beyond.status_code == 422 and "roles.assign" in beyond.json()["detail"]
    _, cy_token = _token(app, cy_browser, LIBRARY_READ)
    again = cy_token.post(ME, json={"name": "offspring", "permissions": ["patrons.read"]})
    assert again.status_code == 403 and "cannot mint a token" in again.json()["detail"]


# -- how long --------------------------------------------------------------------------------------------


def test_each_power_class_has_its_maximum_lifetime_at_minting(app, db, person, tenant):
    _, admin_browser = person("ann", BuiltinRole.TENANT_ADMIN)
    too_long = admin_browser.post(ME, json={"name": "admin", "permissions": ["roles.assign"], "days": 31})
    assert too_long.status_code == 422 and "30 days" in too_long.json()["detail"]
    assert _mint(admin_browser, {"roles.assign"}, days=30)["power_class"] == "administrative"
    default = _mint(admin_browser, {"patrons.read"})
    assert default["power_class"] == "ordinary"
    with tenant_session(db, tenant.id) as session:
        tokens.issue_api_token(session, "sync", [Permission.PATRONS_READ], timedelta(days=366))
        with pytest.raises(InvalidInput, match="366 days"):
            tokens.issue_api_token(session, "sync", [Permission.PATRONS_READ], timedelta(days=367))
        with pytest.raises(InvalidInput, match="30 days"):
            tokens.issue_api_token(session, "admin", [Permission.AUDIT_READ], timedelta(days=31))
    with platform_session(db) as session, pytest.raises(InvalidInput, match="7 days"):
        tokens.issue_operator_token(session, "ops", [Permission.PLATFORM_TENANTS_MANAGE], timedelta(days=8))


def test_a_token_older_than_its_class_allows_is_refused_whatever_its_expiry(app, db, tenant, issue_token):
    """A token minted before a maximum was lowered (or written by hand) ends at its class's limit."""
    admin = issue_token(tenant, permissions={Permission.AUDIT_READ}, ttl=timedelta(days=30))
    ordinary = issue_token(tenant, permissions={Permission.PATRONS_READ}, ttl=timedelta(days=300))
    with tenant_session(db, tenant.id) as session:
        session.execute(
            text(
                "UPDATE api_tokens SET created_at = now() - interval '31 days',"
                " expires_at = now() + interval '300 days'"
            )
        )
    refused = _bearer(app, admin).get("/api/v1/audit/events")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    assert _bearer(app, ordinary).get("/api/v1/patrons").status_code == 200
    with tenant_session(db, tenant.id) as session:
        listed = {row.scopes[0]: tokens.status_of(row) for row in session.scalars(select(ApiToken))}
    assert listed == {"audit.read": tokens.TokenStatus.EXPIRED, "patrons.read": tokens.TokenStatus.ACTIVE}


def test_last_use_is_kept_to_the_minute_not_written_on_every_request(app, db, person, in_tenant, tenant, issue_token):
    _, cy_browser = person("cy")
    _, cy_token = _token(app, cy_browser, LIBRARY_READ)
    service = issue_token(tenant, permissions=LIBRARY_READ)

    def last_used() -> dict:
        with in_tenant(tenant) as session:
            return {row.name: row.last_used_at for row in session.scalars(select(ApiToken))}

    assert set(last_used().values()) == {None}
    for client in (cy_token, _bearer(app, service)):
        assert client.get("/api/v1/patrons").status_code == 200
    first = last_used()
    assert first["laptop script"] is not None and first["test"] is not None
    for client in (cy_token, _bearer(app, service)):
        assert client.get("/api/v1/patrons").status_code == 200
    assert last_used() == first  # within the minute: no write
    with in_tenant(tenant) as session:
        session.execute(text("UPDATE api_tokens SET last_used_at = last_used_at - interval '2 minutes'"))
    assert cy_token.get("/api/v1/patrons").status_code == 200
    # Written again, with the database's now(): the test's one transaction started at `first`.
    assert last_used()["laptop script"] == first["laptop script"]
    assert last_used()["test"] == first["test"] - timedelta(minutes=2)  # not used since: untouched
    assert cy_browser.get(ME).json()[0]["last_used_at"] is not None


# -- listing and revoking over the API -----------------------------------------------------------------


def test_owners_and_holders_of_tokens_manage_list_and_revoke(app, db, person, in_tenant, tenant, issue_token):
    cy, cy_browser = person("cy")
    _, admin_browser = person("ann", BuiltinRole.TENANT_ADMIN)
    cy_minted, cy_token = _token(app, cy_browser, LIBRARY_READ)
    cy_other, cy_other_token = _token(app, cy_browser, {Permission.PATRONS_READ})
    ann_minted, _ = _token(app, admin_browser, {Permission.PATRONS_READ})
    service = issue_token(tenant, permissions=LIBRARY_READ)

    # The owner sees their own, through their session or one of their tokens; never a secret.
    own = cy_token.get(ME)
    assert own.status_code == 200 and {t["id"] for t in own.json()} == {cy_minted["id"], cy_other["id"]}
    assert {t["owner_id"] for t in own.json()} == {str(cy)} and "token" not in own.json()[0]
    assert "token_hash" not in own.text and cy_minted["token"] not in own.text
    # A service token belongs to nobody: it has no "own" tokens.
    nobody = _bearer(app, service).get(ME)
    assert nobody.status_code == 403 and "service token" in nobody.json()["detail"]
    # Only tokens.manage sees the institution's, service tokens included.
    assert cy_browser.get("/api/v1/tokens").status_code == 403
    every = admin_browser.get("/api/v1/tokens").json()
    assert {t["id"] for t in every} >= {cy_minted["id"], ann_minted["id"]}
    assert any(t["owner_id"] is None for t in every)  # the service token

    # The owner cannot reach another person's token; a token may end itself.
    assert cy_browser.post(f"{ME}/{ann_minted['id']}/revoke").status_code == 404
    ended = cy_token.post(f"{ME}/{cy_minted['id']}/revoke")
    assert ended.status_code == 200 and ended.json()["status"] == "revoked"
    assert cy_token.get("/api/v1/patrons").status_code == 401
    assert cy_browser.post(f"{ME}/{cy_minted['id']}/revoke").status_code == 409  # revoked already

    # An administrator ends anyone's, at once; the security contacts hear of it.
    assert admin_browser.post(f"/api/v1/tokens/{cy_other['id']}/revoke").json()["status"] == "revoked"
    assert cy_other_token.get("/api/v1/patrons").status_code == 401
    assert admin_browser.post(f"/api/v1/tokens/{cy_other['id']}/revoke").status_code == 409
    assert cy_browser.post(f"/api/v1/tokens/{ann_minted['id']}/revoke").status_code == 403  # no tokens.manage
    with in_tenant(tenant) as session:
        subjects = [open_mail(session, m).subject for m in session.scalars(select(OutboxMessage))]
        events = session.execute(
            text("SELECT action, details FROM audit_events WHERE action LIKE 'token.%' ORDER BY seq")
        ).all()
    assert sum("API token revoked" in s for s in subjects) == 2
    revoked = [d for a, d in events if a == "token.revoked"]
    assert [d["by"] for d in revoked] == ["owner", "tokens.manage"]
    assert all(d["owner_id"] == str(cy) for d in revoked)
    assert any(a == "token.listed" and d["owner_id"] == str(cy) for a, d in events)
    assert not any(cy_minted["token"] in json.dumps(d) for _, d in events)


def test_an_administrative_tokens_notice_cannot_be_muted(app, person, in_tenant, tenant):
    _, admin_browser = person("ann", BuiltinRole.TENANT_ADMIN)
    contact = admin_browser.get("/api/v1/security-contacts/mutes").json()[0]["contact_id"]
    assert "admin_api_token_created" not in admin_browser.get("/api/v1/security-contacts/mutes").json()[0]["mutable"]
    refused = admin_browser.put(
        f"/api/v1/security-contacts/{contact}/mutes", json={"muted": ["admin_api_token_created"]}
    )
    assert refused.status_code == 409 and refused.json()["type"] == PROBLEM + "notice-not-mutable"
    muted = admin_browser.put(
        f"/api/v1/security-contacts/{contact}/mutes", json={"muted": ["api_token_created", "api_token_revoked"]}
    )
    assert muted.status_code == 200

    def notices() -> list[str]:
        with in_tenant(tenant) as session:
            mails = [open_mail(session, m) for m in session.scalars(select(OutboxMessage))]
        return [m.body for m in mails if "API token" in m.subject]

    before = len(notices())
    _mint(admin_browser, {Permission.PATRONS_READ})  # ordinary: muted
    assert len(notices()) == before
    _mint(admin_browser, {Permission.ROLES_ASSIGN})  # administrative: mailed all the same
    mailed = notices()
    assert len(mailed) == before + 1 and "API token that carries administrative permissions" in mailed[-1]
    assert "Changed by: account" in mailed[-1]


# -- operator tokens --------------------------------------------------------------------------------------


def test_operator_token_minting_needs_an_operator_signed_in_with_a_second_factor(
    app, db, enrolled, signed_in, browser, operator_token  # noqa: F811 - fixtures
):
    # A password alone: the pending session authenticates nothing.
    enrolled("pat.ops")
    pending = browser()
    login = {"username": "pat.ops", "password": OPERATOR_PASSWORD}
    assert pending.post("/api/v1/operator/auth/login", json=login).json()["mfa_required"] is True
    body = {"name": "provisioning", "permissions": ["platform.tenants.manage"], "hours": 8}
    assert pending.post(OPERATOR_ME, json=body).status_code == 401
    # A token, even an operator's: a token never mints a token.
    refused = _bearer(app, operator_token).post(OPERATOR_ME, json=body)
    assert refused.status_code == 403 and "cannot mint a token" in refused.json()["detail"]

    ops = signed_in("olga.ops")
    minted = ops.post(OPERATOR_ME, json=body)
    assert minted.status_code == 201, minted.text
    with platform_session(db) as session:
        olga = operator_accounts.find(session, "olga.ops")
    assert minted.json()["owner_id"] == str(olga.id) and minted.json()["power_class"] == "platform"
    olga_token = _bearer(app, minted.json()["token"])
    assert olga_token.get("/api/v1/operator/tenants").status_code == 200
    # At most the role's permissions, at most 7 days.
    beyond = ops.post(OPERATOR_ME, json={**body, "permissions": ["platform.operators.manage"]})  # the CISO's
    assert beyond.status_code == 422 and "platform.operators.manage" in beyond.json()["detail"]
    assert ops.post(OPERATOR_ME, json={**body, "hours": 169}).status_code == 422
    # Listed and revoked by their owner (a token may end itself).
    assert [t["id"] for t in olga_token.get(OPERATOR_ME).json()] == [minted.json()["id"]]
    assert _bearer(app, operator_token).get(OPERATOR_ME).status_code == 403  # a service token owns none
    ended = olga_token.post(f"{OPERATOR_ME}/{minted.json()['id']}/revoke")
    assert ended.status_code == 200 and olga_token.get("/api/v1/operator/tenants").status_code == 401


def test_disabling_an_operator_ends_their_tokens_and_sessions_at_once(app, db, signed_in):  # noqa: F811
    ops = signed_in("olga.ops")
    minted = ops.post(OPERATOR_ME, json={"name": "cron", "permissions": ["platform.tenants.manage"]}).json()
    olga_token = _bearer(app, minted["token"])
    assert olga_token.get("/api/v1/operator/tenants").status_code == 200
    with platform_session(db) as session:
        operator_accounts.disable(session, "olga.ops")
    assert olga_token.get("/api/v1/operator/tenants").status_code == 401
    assert ops.get("/api/v1/operator/tenants").status_code == 401
    with platform_session(db) as session:
        assert session.get(OperatorToken, uuid.UUID(minted["id"])).revoked_at is not None
    with tenant_session(db, PLATFORM_CHAIN) as session:
        (details,) = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'operator_account.disabled'")
        ).scalars()
    assert (details["sessions_ended"], details["tokens_revoked"]) == (1, 1)


def test_break_glass_is_never_held_by_a_token(app, db, tenant, signed_in, operator_token):  # noqa: F811
    ciso = signed_in("carol.ciso", "ciso")
    asker = Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_OPS])

    def requested():
        return grants.request_grant(
            db, asker, tenant.id, scope=GrantScope.READ, justification="patron locked out, INC-3", ticket="INC-3",
            duration=timedelta(hours=1),
        )  # fmt: skip

    # Not mintable: the schema names no such permission, and the service refuses it by name.
    asked = ciso.post(OPERATOR_ME, json={"name": "glass", "permissions": ["platform.grants.break_glass"]})
    assert asked.status_code == 422
    with platform_session(db) as session, pytest.raises(InvalidInput, match="never held by a token"):
        tokens.issue_operator_token(session, "glass", [Permission.PLATFORM_GRANTS_BREAK_GLASS], timedelta(hours=1))
    # A token that carries it anyway (written by hand, or minted before this rule) is stripped of it.
    with platform_session(db) as session:
        session.execute(text("UPDATE operator_tokens SET scopes = array_append(scopes, 'platform.grants.break_glass')"))
    grant = requested()
    url = f"/api/v1/operator/grants/{tenant.id}/{grant.id}/break-glass"
    refused = _bearer(app, operator_token).post(url)
    assert refused.status_code == 403 and "platform.grants.break_glass" in refused.json()["detail"]
    # The CISO, signed in with a second factor, breaks glass.
    broken = ciso.post(url)
    assert broken.status_code == 200 and broken.json()["break_glass"] is True


# -- the console ----------------------------------------------------------------------------------------


def _run(*args: str):
    from bookwarden.cli import app as cli_app

    get_settings.cache_clear()
    return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)


def test_the_console_mints_service_tokens_lists_and_revokes_every_token(cli_env, committed_db, home):  # noqa: F811
    with platform_session(committed_db) as session:
        tenant = tenancy.create_tenant(session, committed_db.keyring, home, "north", "North University")
    with tenant_session(committed_db, tenant.id) as session:
        account = accounts.create_account(session, _setup(tenant), kind=AccountKind.STAFF, username="dee")
        account.password_hash, account.status = "x", AccountStatus.ACTIVE
        session.flush()
        grant(session, tenant.id, account.id, BuiltinRole.CIRCULATION_STAFF)
        personal, _ = tokens.issue_api_token(session, "dee's", [Permission.PATRONS_READ], timedelta(days=1),
                                             owner_id=account.id)  # fmt: skip

        tokens.issue_api_token(session, "sync", sorted(LIBRARY_READ), timedelta(days=1))  # a machine's, no owner

    # The console mints no institution's token (issue 12): their owners do, signed in.
    refused = _run("token", "create", "--tenant", "north", "--role", "tenant_admin", "--name", "sync")
    assert refused.exit_code == 2 and "No such option" in refused.output
    with tenant_session(committed_db, tenant.id) as session:
        # dee's and the machine's: nothing was minted
        assert len(tokens.list_api_tokens(session, acting(tenant.id, Permission.TOKENS_MANAGE))) == 2
    with pytest.raises(Forbidden, match=r"platform\.operators\.manage"):  # only what the operator holds
        _run("token", "create", "--permission", "platform.operators.manage")
    service = _run("token", "create", "--permission", "platform.usage.read")
    assert service.exit_code == 0 and service.stdout.strip().startswith("bwo_")
    with platform_session(committed_db) as session:
        (operator_row,) = session.scalars(select(OperatorToken)).all()
    assert operator_row.scopes == ["platform.usage.read"] and operator_row.owner_id is None
    assert operator_row.expires_at - operator_row.created_at <= timedelta(days=7)

    listed = _run("token", "list", "--tenant", "north")
    assert listed.exit_code == 0
    assert "sync" in listed.stdout and "(service)" in listed.stdout and str(account.id) in listed.stdout
    assert "ordinary" in listed.stdout and "bwt_" not in listed.stdout
    assert str(operator_row.id) in _run("token", "list", "--operator").stdout

    assert _run("token", "revoke", str(personal.id), "--tenant", "north").exit_code == 0
    again = _run("token", "revoke", str(personal.id), "--tenant", "north")
    assert again.exit_code == 2 and "revoked already" in again.output
    assert _run("token", "revoke", str(operator_row.id), "--operator").exit_code == 0
    with tenant_session(committed_db, tenant.id) as session:
        assert session.get(ApiToken, (tenant.id, personal.id)).revoked_at is not None
        actions = session.execute(text("SELECT action FROM audit_events ORDER BY seq")).scalars().all()
    assert {"token.issued", "token.listed", "token.revoked"} <= set(actions)
    with tenant_session(committed_db, PLATFORM_CHAIN) as session:
        platform = session.execute(text("SELECT action FROM audit_events ORDER BY seq")).scalars().all()
    assert platform.count("token.revoked") == 1 and "token.listed" in platform
