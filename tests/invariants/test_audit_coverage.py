"""Audit coverage: every route of the API and every command of the console leaves its audit event.

Both lists come from enumeration (the FastAPI app's routes, the Typer app's commands), so a route
or command added later fails here until it records its event and has a recipe below:

- ROUTE_RECIPES: (method, path) -> recipe(world) -> Call. The recipe prepares what the call needs
  (a record, an account, a signed-in browser...) through the real API or services, then names the
  call under test and the action it must record, in which chain. The test reads the events
  appended after that moment in every chain and looks for the action, succeeded, with the
  response's request id.
- COMMAND_RECIPES: command path -> recipe(console) -> Command, the same for the command line,
  run in-process against the committed test database. Every command also declares the one
  permission it needs (`@command` in cli.py), and leaves console.command with the OS user.

Only the routes in EXEMPT record nothing, each for the reason written there. Around them, focused
tests: what a patron read records, a failed sign-in on an unknown account, an operator working
under a grant, a refused request, a refused command.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any
from uuid import UUID

import psycopg
import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope
from bookwarden.access.permissions import (
    BUILTIN_PERMISSIONS,
    LIBRARY_READ,
    LIBRARY_WRITE,
    PLATFORM_PERMISSIONS,
    BuiltinRole,
    Permission,
)
from bookwarden.access.principal import Principal, PrincipalKind
from bookwarden.access.roles import notices
from bookwarden.api.app import create_app
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.config import Settings, get_settings
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db import provision
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import links, passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.models import Account, AccountKind, AccountStatus
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.library import service as library
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy import service as tenancy
from tests.conftest import TEST_DATABASE
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.helpers import CHANGES, PATHS, fresh_address, populate
from tests.identity.test_mfa import SoftwareAuthenticator

PASSWORD = "violet tractor mango 42 harbour"
NEW_PASSWORD = "amber lantern quietly 77 orchard"
ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
ORIGIN_HEADERS = {"X-Requested-With": "fetch"}

# The only routes that record nothing, and why. Everything else must leave an event.
EXEMPT = {
    # Liveness probe for load balancers, every few seconds: it reads nothing of anyone's and does
    # nothing; an event per probe would bury the trail (and the metering) in noise.
    "/healthz": "liveness probe: touches no data, no access decision",
    # Prometheus scrapes it: request counts and latencies per route, no personal data, no decision.
    "/metrics": "operational counters for the scraper: no data, no access decision",
    # The API's description, the same bytes for everyone: no data behind it, no decision.
    "/openapi.json": "the published API description: public, the same for everyone",
    # The documentation pages render /openapi.json in a browser; they hold no data of their own.
    "/docs": "documentation page (Swagger UI): public, static",
    "/docs/oauth2-redirect": "documentation page helper (Swagger UI): public, static",
    "/redoc": "documentation page (ReDoc), a /docs page by another name: public, static",
}


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Argon2 at OWASP's floor here, as in the sign-in tests: many accounts sign in."""
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


# -- reading the trail -----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    chain: UUID
    action: str
    outcome: str
    actor_kind: str
    actor_id: UUID | None
    grant_id: UUID | None
    target_kind: str | None
    target_id: UUID | None
    request_id: str | None
    source_address: str | None
    details: dict


COLUMNS = (
    "tenant_id, seq, action, outcome, actor_kind, actor_id, grant_id, target_kind, target_id, request_id, "
    "source_address, details"
)


def _seen(row) -> Seen:
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    values.pop("seq")
    return Seen(chain=values.pop("tenant_id"), **values)


class Trail:
    """The events of every chain, read as the application reads them (row-level security, per chain)."""

    def __init__(self, db):
        self.db = db

    def chains(self) -> list[UUID]:
        with platform_session(self.db) as session:
            return [PLATFORM_CHAIN, *session.execute(text("SELECT id FROM tenants")).scalars()]

    def heads(self) -> dict[UUID, int]:
        heads = {}
        for chain in self.chains():
            with tenant_session(self.db, chain) as session:
                heads[chain] = session.execute(text("SELECT coalesce(max(seq), 0) FROM audit_events")).scalar_one()
        return heads

    def since(self, heads: dict[UUID, int]) -> list[Seen]:
        seen = []
        for chain in self.chains():
            with tenant_session(self.db, chain) as session:
                rows = session.execute(
                    text(f"SELECT {COLUMNS} FROM audit_events WHERE seq > :after ORDER BY seq"),  # noqa: S608
                    {"after": heads.get(chain, 0)},
                )
                seen += [_seen(row) for row in rows]
        return seen


def _found(seen: list[Seen], action: Action | None, chain: UUID | None, what: str) -> Seen:
    """The event `action` names (or any, for None) among `seen`, succeeded, in `chain` when given."""
    assert seen, f"{what} wrote no audit event"
    wanted = [e for e in seen if action is None or e.action == action]
    assert wanted, f"{what} wrote {sorted({e.action for e in seen})}, not {action}"
    succeeded = [e for e in wanted if e.outcome == "succeeded"]
    assert succeeded, f"{what}: {action} was recorded as {[e.outcome for e in wanted]}"
    if chain is not None:
        assert any(e.chain == chain for e in succeeded), f"{what}: {action} went to another chain than {chain}"
        succeeded = [e for e in succeeded if e.chain == chain]
    return succeeded[0]


# -- the world a route's recipe builds on ------------------------------------------------------


@dataclass
class Call:
    """The call under test: who sends what, and the event it must leave (None: any event) in which chain."""

    client: TestClient
    method: str
    url: str
    expect: Action | None
    chain: UUID | None
    json: Any = None
    params: dict | None = None
    data: dict | None = None
    content: bytes | None = None  # a raw body (a CSV upload)

    def send(self):
        return self.client.request(
            self.method,
            self.url,
            json=self.json,
            params=self.params,
            data=self.data,
            content=self.content,
            follow_redirects=False,
        )


class World:
    """Everything a recipe may need, made on first use inside the test's rolled-back transaction."""

    def __init__(self, request, db, app, tenant, issue_token, operator_token, browser):
        self.request, self.db, self.app, self.tenant = request, db, app, tenant
        self._issue_token, self._operator_token, self._browser = issue_token, operator_token, browser
        self.trail = Trail(db)

    # callers

    def client(self, permissions) -> TestClient:
        client = TestClient(self.app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {self._issue_token(self.tenant, permissions=permissions)}"
        return client

    @cached_property
    def staff(self) -> TestClient:
        return self.client(LIBRARY_READ | LIBRARY_WRITE)

    @cached_property
    def admin(self) -> TestClient:
        return self.client(ADMIN)

    @cached_property
    def operator(self) -> TestClient:
        client = TestClient(self.app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {self._operator_token}"
        return client

    def browser(self) -> TestClient:
        return self._browser(fresh_address())

    # data

    @cached_property
    def records(self) -> dict:
        return populate(self.staff)

    def new_record(self, kind) -> dict:
        response = self.staff.post(f"/api/v1/{PATHS[kind]}", json=self.new_body(kind))
        assert response.status_code == 201, response.text
        return response.json()

    def new_body(self, kind) -> dict:
        if kind is library.PATRONS:
            return {"name": "Newly Registered", "barcode": f"9{uuid.uuid4().int % 10**13:013d}"}
        patron = self.records[library.PATRONS]["id"]
        return {
            library.LOANS: {
                "patron_id": patron,
                "item_id": "item-9",
                "item_title": "Beloved",
                "borrowed_at": "2026-02-01T10:00:00Z",
                "due_at": "2026-02-22T10:00:00Z",
            },
            library.SEARCHES: {"patron_id": patron, "query": "tide tables"},
            library.READING_LISTS: {"patron_id": patron, "title": "Summer reading"},
            library.READING_LIST_ITEMS: {"list_id": self.records[library.READING_LISTS]["id"], "item_id": "item-3"},
            library.POSTS: {"patron_id": patron, "board": "book-club", "body": "Next month?"},
        }[kind]

    def as_admin(self) -> Principal:
        return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), self.tenant.id, ADMIN)

    def account(
        self,
        username: str,
        *,
        kind: AccountKind = AccountKind.STAFF,
        active: bool = True,
        totp: str | None = None,
    ) -> Account:
        """An account with an email; active with PASSWORD, or invited; with an authenticator app when `totp`."""
        with tenant_session(self.db, self.tenant.id) as session:
            account = accounts.create_account(
                session, self.as_admin(), kind=kind, username=username, email=f"{username}@alpha.example"
            )
            if active:
                account.password_hash = passwords.hash_password(PASSWORD, passwords.DEFAULT)
                account.status = AccountStatus.ACTIVE
            if totp is not None:
                key = session.keyring.subject_key(self.tenant.id, account.id)
                account.totp_secret = encrypt_field(key, self.tenant.id, "accounts", "totp_secret", account.id, totp)
            session.flush()
            return account

    def login(self, client: TestClient, username: str) -> dict:
        response = client.post(
            "/api/v1/auth/login", json={"institution": self.tenant.slug, "username": username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def signed_in(self, username: str, **account) -> TestClient:
        """A browser signed in (second step done, when any) as a new account `username`."""
        self.account(username, **account)
        client = self.browser()
        assert self.login(client, username)["mfa_required"] is False
        return client

    def with_app(self, client: TestClient) -> pyotp.TOTP:
        """Enrol an authenticator app through the API for the signed-in `client`."""
        started = client.post("/api/v1/auth/me/mfa/totp")
        assert started.status_code == 201, started.text
        totp = pyotp.TOTP(started.json()["secret"])
        confirmed = client.post("/api/v1/auth/me/mfa/totp/confirm", json={"code": totp.now()})
        assert confirmed.status_code == 200, confirmed.text
        return totp

    def with_key(self, client: TestClient) -> tuple[SoftwareAuthenticator, str]:
        """Register a security key through the API for the signed-in `client`; the key and its id."""
        from tests.identity.test_mfa_enrolment import ORIGIN

        key = SoftwareAuthenticator()
        options = client.post("/api/v1/auth/me/mfa/webauthn/options")
        assert options.status_code == 200, options.text
        credential = key.create(json.dumps(options.json()["options"]), origin=ORIGIN)
        added = client.post("/api/v1/auth/me/mfa/webauthn/credentials", json={"credential": credential})
        assert added.status_code == 201, added.text
        return key, added.json()["id"]

    def pending_key_sign_in(self, username: str) -> tuple[TestClient, SoftwareAuthenticator]:
        """A browser whose sign-in waits for the security key registered to a new account `username`."""
        key, _ = self.with_key(self.signed_in(username))
        client = self.browser()
        assert self.login(client, username)["mfa_required"] is True
        return client, key

    def link(self, purpose: links.LinkPurpose, account: Account) -> str:
        return links.issue(self.db.master, purpose, self.tenant.id, account).token

    def operator_principal(self) -> Principal:
        return Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, PLATFORM_PERMISSIONS)

    def grant_requested(self, operator: Principal | None = None):
        return grants.request_grant(
            self.db,
            operator or self.operator_principal(),
            self.tenant.id,
            scope=GrantScope.READ,
            justification="patron cannot sign in, ticket INC-9",
            ticket="INC-9",
            duration=timedelta(hours=1),
        )

    def grant_approved(self):
        grant = self.grant_requested()
        with tenant_session(self.db, self.tenant.id) as session:
            grants.approve_grant(session, self.as_admin(), grant.id)
        return grant

    def approval_asked(self):
        """An administrative role asked for by another administrator, waiting for a second person."""
        account = self.account(f"candidate-{uuid.uuid4().hex[:6]}")
        with tenant_session(self.db, self.tenant.id) as session:
            return approvals.ask(
                session,
                self.as_admin(),
                SensitiveAction.GRANT_ADMIN_ROLE,
                {"account_id": str(account.id), "role": BuiltinRole.TENANT_ADMIN.value},
            )

    def saml_configured(self) -> None:
        """Sign-on asked by one administrator and approved by another (maker-checker)."""
        provider = self.request.getfixturevalue("idp")
        body = {"idp_metadata": provider.metadata(), "role_mappings": MAPPINGS, "create_accounts": True}
        asked = self.admin.put("/api/v1/sso/saml", json=body)
        assert asked.status_code == 202, asked.text
        assert self.client(ADMIN).post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200


@pytest.fixture
def world(request, db, app, tenant, issue_token, operator_token, browser) -> World:
    return World(request, db, app, tenant, issue_token, operator_token, browser)


# -- recipes: one per route --------------------------------------------------------------------

Recipe = Callable[[World], Call]
ROUTE_RECIPES: dict[tuple[str, str], Recipe] = {}


def route(method: str, path: str) -> Callable[[Recipe], Recipe]:
    def register(recipe: Recipe) -> Recipe:
        assert (method, path) not in ROUTE_RECIPES, (method, path)
        ROUTE_RECIPES[(method, path)] = recipe
        return recipe

    return register


def _library_recipes(kind, path: str) -> None:
    collection, one = f"/api/v1/{path}", f"/api/v1/{path}/{{record_id}}"

    def chain(w: World) -> UUID:
        return w.tenant.id

    route("POST", collection)(
        lambda w: Call(w.staff, "POST", collection, kind.action("created"), chain(w), json=w.new_body(kind))
    )
    route("GET", collection)(lambda w: Call(w.staff, "GET", collection, kind.action("listed"), chain(w)))
    route("GET", one)(
        lambda w: Call(w.staff, "GET", f"{collection}/{w.records[kind]['id']}", kind.action("viewed"), chain(w))
    )
    route("PATCH", one)(
        lambda w: Call(
            w.staff,
            "PATCH",
            f"{collection}/{w.records[kind]['id']}",
            kind.action("changed"),
            chain(w),
            json=CHANGES[kind],
        )
    )
    route("DELETE", one)(
        lambda w: Call(w.staff, "DELETE", f"{collection}/{w.new_record(kind)['id']}", kind.action("deleted"), chain(w))
    )


for _kind, _path in PATHS.items():
    _library_recipes(_kind, _path)


@route("POST", "/api/v1/patrons/lookup")
def _(w):
    barcode = w.records[library.PATRONS]["barcode"]
    body = {"by": "barcode", "value": barcode}
    return Call(w.staff, "POST", "/api/v1/patrons/lookup", Action.PATRON_LOOKED_UP, w.tenant.id, json=body)


# tenants (operators)

TENANTS = "/api/v1/operator/tenants"


@route("POST", TENANTS)
def _(w):
    body = {"slug": "gamma", "name": "Gamma College"}
    return Call(w.operator, "POST", TENANTS, Action.TENANT_CREATED, PLATFORM_CHAIN, json=body)


@route("GET", TENANTS)
def _(w):
    return Call(w.operator, "GET", TENANTS, Action.TENANT_LISTED, PLATFORM_CHAIN)


@route("GET", f"{TENANTS}/{{tenant_id}}")
def _(w):
    return Call(w.operator, "GET", f"{TENANTS}/{w.tenant.id}", Action.TENANT_VIEWED, PLATFORM_CHAIN)


@route("POST", f"{TENANTS}/{{tenant_id}}/suspend")
def _(w):
    url = f"{TENANTS}/{w.tenant.id}/suspend"
    return Call(w.operator, "POST", url, Action.TENANT_SUSPENDED, PLATFORM_CHAIN, json={"reason": "unpaid invoice"})


@route("POST", f"{TENANTS}/{{tenant_id}}/resume")
def _(w):
    with platform_session(w.db) as session:
        tenancy.suspend_tenant(session, w.tenant.id, "unpaid invoice")
    return Call(w.operator, "POST", f"{TENANTS}/{w.tenant.id}/resume", Action.TENANT_RESUMED, PLATFORM_CHAIN)


# roles, approvals, security contacts, password policies


@route("GET", "/api/v1/roles")
def _(w):
    return Call(w.admin, "GET", "/api/v1/roles", Action.ROLE_LISTED, w.tenant.id)


@route("POST", "/api/v1/roles")
def _(w):
    body = {"name": "shelver", "permissions": ["loans.read"]}
    return Call(w.admin, "POST", "/api/v1/roles", Action.ROLE_CREATED, w.tenant.id, json=body)


@route("PUT", "/api/v1/roles/{name}/permissions")
def _(w):
    assert w.admin.post("/api/v1/roles", json={"name": "shelver", "permissions": []}).status_code == 201
    body = {"permissions": ["loans.read", "loans.write"]}
    return Call(w.admin, "PUT", "/api/v1/roles/shelver/permissions", Action.ROLE_CHANGED, w.tenant.id, json=body)


@route("GET", "/api/v1/accounts/{account_id}/roles")
def _(w):
    url = f"/api/v1/accounts/{w.account('rhea').id}/roles"
    return Call(w.admin, "GET", url, Action.ROLE_LISTED, w.tenant.id)


@route("POST", "/api/v1/accounts/{account_id}/roles")
def _(w):
    url = f"/api/v1/accounts/{w.account('rhea').id}/roles"
    return Call(w.admin, "POST", url, Action.ROLE_GRANTED, w.tenant.id, json={"role": "circulation_staff"})


@route("DELETE", "/api/v1/accounts/{account_id}/roles/{role}")
def _(w):
    account = w.account("rhea")
    assert w.admin.post(f"/api/v1/accounts/{account.id}/roles", json={"role": "auditor"}).status_code == 204
    return Call(w.admin, "DELETE", f"/api/v1/accounts/{account.id}/roles/auditor", Action.ROLE_REVOKED, w.tenant.id)


@route("GET", "/api/v1/approvals")
def _(w):
    return Call(w.admin, "GET", "/api/v1/approvals", Action.APPROVAL_LISTED, w.tenant.id)


@route("POST", "/api/v1/approvals/{record_id}/approve")
def _(w):
    url = f"/api/v1/approvals/{w.approval_asked().id}/approve"
    return Call(w.admin, "POST", url, Action.APPROVAL_APPROVED, w.tenant.id)


@route("POST", "/api/v1/approvals/{record_id}/reject")
def _(w):
    url = f"/api/v1/approvals/{w.approval_asked().id}/reject"
    return Call(w.admin, "POST", url, Action.APPROVAL_REJECTED, w.tenant.id)


# A bulk export of patrons: asked by one privacy officer, approved by another (who also reads accounts,
# as the approval route requires), downloaded by the one who asked.
EXPORTER = BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
EXPORTS = "/api/v1/patrons/exports"


@route("POST", EXPORTS)
def _(w):
    return Call(w.client(EXPORTER), "POST", EXPORTS, Action.APPROVAL_REQUESTED, w.tenant.id, json={"format": "csv"})


@route("GET", f"{EXPORTS}/{{approval_id}}")
def _(w):
    w.records  # noqa: B018 - a patron to export
    asker = w.client(EXPORTER)
    asked = asker.post(EXPORTS, json={"format": "jsonl"})
    assert asked.status_code == 202, asked.text
    checker = w.client(EXPORTER | {Permission.ACCOUNTS_READ})
    assert checker.post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200
    return Call(asker, "GET", f"{EXPORTS}/{asked.json()['id']}", Action.PATRON_EXPORTED, w.tenant.id)


@route("GET", "/api/v1/security-contacts")
def _(w):
    return Call(w.admin, "GET", "/api/v1/security-contacts", Action.SECURITY_CONTACT_LISTED, w.tenant.id)


@route("POST", "/api/v1/security-contacts")
def _(w):
    body = {"email": "security@alpha.example"}
    return Call(w.admin, "POST", "/api/v1/security-contacts", Action.SECURITY_CONTACT_ADDED, w.tenant.id, json=body)


def _policy_recipe(role_class: str, floor: int) -> None:
    url = f"/api/v1/password-policies/{role_class}"
    route("PUT", url)(
        lambda w: Call(w.admin, "PUT", url, Action.APPROVAL_REQUESTED, w.tenant.id, json={"min_length": floor})
    )


for _class, _floor in (("patron", 8), ("staff", 12), ("admin", 15)):
    _policy_recipe(_class, _floor)


# operator grants


@route("POST", "/api/v1/operator/grants")
def _(w):
    body = {
        "tenant_id": str(w.tenant.id),
        "scope": "read",
        "justification": "patron cannot sign in, ticket INC-9",
        "ticket": "INC-9",
        "hours": 1,
    }
    return Call(w.operator, "POST", "/api/v1/operator/grants", Action.GRANT_REQUESTED, w.tenant.id, json=body)


@route("POST", "/api/v1/operator/grants/{tenant_id}/{grant_id}/break-glass")
def _(w):
    grant = w.grant_requested()  # asked by another operator: the CISO cannot break glass for their own
    url = f"/api/v1/operator/grants/{w.tenant.id}/{grant.id}/break-glass"
    return Call(w.operator, "POST", url, Action.GRANT_BREAK_GLASS, w.tenant.id)


# the platform DPO's oversight


def _escalated(db, tenant_id: UUID) -> UUID:
    """An escalation as the hourly job raises it for an overdue request (metadata only)."""
    from bookwarden.privacy.escalations.models import Level, SubjectKind
    from bookwarden.privacy.escalations.service import raise_escalation

    with tenant_session(db, tenant_id) as session:
        due = session.execute(text("SELECT now() - interval '1 day'")).scalar_one()
        return raise_escalation(session, SubjectKind.PRIVACY_REQUEST, uuid.uuid4(), Level.OVERDUE, due)


@route("GET", "/api/v1/operator/privacy/escalations")
def _(w):
    _escalated(w.db, w.tenant.id)
    return Call(w.operator, "GET", "/api/v1/operator/privacy/escalations", Action.DPO_ESCALATION_LISTED, PLATFORM_CHAIN)


@route("POST", "/api/v1/operator/privacy/escalations/{tenant_id}/{escalation_id}/acknowledge")
def _(w):
    url = f"/api/v1/operator/privacy/escalations/{w.tenant.id}/{_escalated(w.db, w.tenant.id)}/acknowledge"
    return Call(w.operator, "POST", url, Action.DPO_ESCALATION_ACKNOWLEDGED, w.tenant.id)


@route("GET", "/api/v1/operator-grants")
def _(w):
    return Call(w.admin, "GET", "/api/v1/operator-grants", Action.GRANT_LISTED, w.tenant.id)


@route("POST", "/api/v1/operator-grants/{record_id}/approve")
def _(w):
    url = f"/api/v1/operator-grants/{w.grant_requested().id}/approve"
    return Call(w.admin, "POST", url, Action.GRANT_APPROVED, w.tenant.id)


@route("POST", "/api/v1/operator-grants/{record_id}/deny")
def _(w):
    url = f"/api/v1/operator-grants/{w.grant_requested().id}/deny"
    return Call(w.admin, "POST", url, Action.GRANT_REJECTED, w.tenant.id)


@route("POST", "/api/v1/operator-grants/{record_id}/revoke")
def _(w):
    url = f"/api/v1/operator-grants/{w.grant_approved().id}/revoke"
    return Call(w.admin, "POST", url, Action.GRANT_REVOKED, w.tenant.id)


# signing in and out


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


@route("GET", "/api/v1/audit/events")
def _(w):
    client = w.client({Permission.AUDIT_READ})
    return Call(client, "GET", "/api/v1/audit/events", Action.AUDIT_SEARCHED, w.tenant.id)


@route("GET", "/api/v1/audit/events/export")
def _(w):
    client = w.client({Permission.AUDIT_READ})
    return Call(client, "GET", "/api/v1/audit/events/export", Action.AUDIT_EXPORTED, w.tenant.id)


@route("GET", "/api/v1/operator/usage")
def _(w):
    return Call(w.operator, "GET", "/api/v1/operator/usage", Action.USAGE_REPORTED, PLATFORM_CHAIN)


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


# privacy: records of processing, complaints

PRIVACY = "/api/v1/privacy"
COMPLAINT = {"subject": "My loans were shown to another patron", "body": "At the desk, on the screen."}


def _patron_browser(w: World) -> TestClient:
    """A browser signed in as a new patron account holding the patron role (the privacy portal)."""
    from bookwarden.identity import roles as access

    username = f"patron-{uuid.uuid4().hex[:6]}"
    account = w.account(username, kind=AccountKind.PATRON)
    with tenant_session(w.db, w.tenant.id) as session:
        access.grant_role(session, w.as_admin(), account.id, BuiltinRole.PATRON)
    client = w.browser()
    w.login(client, username)
    return client


def _complaint(w: World) -> UUID:
    from bookwarden.privacy.complaints import service as complaints

    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_COMPLAINTS_REGISTER})
    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    with tenant_session(w.db, w.tenant.id) as session:
        return complaints.register_for_patron(session, desk, patron_id, **COMPLAINT).id


@route("GET", f"{PRIVACY}/records-of-processing")
def _(w):
    client = w.client({Permission.PRIVACY_RECORDS_READ})
    url = f"{PRIVACY}/records-of-processing"
    return Call(client, "GET", url, Action.RECORDS_OF_PROCESSING_EXPORTED, w.tenant.id)


@route("POST", f"{PRIVACY}/complaints")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_REGISTER})
    body = {"patron_id": w.records[library.PATRONS]["id"], **COMPLAINT}
    return Call(client, "POST", f"{PRIVACY}/complaints", Action.COMPLAINT_REGISTERED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/me/complaints")
def _(w):
    client = _patron_browser(w)
    return Call(client, "POST", f"{PRIVACY}/me/complaints", Action.COMPLAINT_REGISTERED, w.tenant.id, json=COMPLAINT)


@route("GET", f"{PRIVACY}/me/complaints")
def _(w):
    return Call(_patron_browser(w), "GET", f"{PRIVACY}/me/complaints", Action.COMPLAINT_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/complaints")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_HANDLE})
    return Call(client, "GET", f"{PRIVACY}/complaints", Action.COMPLAINT_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/complaints/{{complaint_id}}")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_HANDLE})
    return Call(client, "GET", f"{PRIVACY}/complaints/{_complaint(w)}", Action.COMPLAINT_VIEWED, w.tenant.id)


@route("POST", f"{PRIVACY}/complaints/{{complaint_id}}/answer")
def _(w):
    client = w.client({Permission.PRIVACY_COMPLAINTS_HANDLE})
    url = f"{PRIVACY}/complaints/{_complaint(w)}/answer"
    return Call(client, "POST", url, Action.COMPLAINT_ANSWERED, w.tenant.id, json={"answer": "The screen was moved."})


# privacy: data-subject requests (the queue, the patron's own, the form without an account)

OFFICER_PERMISSIONS = {Permission.PRIVACY_REQUESTS_HANDLE}


def _linked_patron_browser(w: World) -> TestClient:
    """A browser signed in as a patron account linked to the patron record made through the API."""
    from bookwarden.identity import roles as access

    username = f"linked-{uuid.uuid4().hex[:6]}"
    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    account = w.account(username, kind=AccountKind.PATRON)
    with tenant_session(w.db, w.tenant.id) as session:
        session.get(Account, (w.tenant.id, account.id)).patron_id = patron_id
        access.grant_role(session, w.as_admin(), account.id, BuiltinRole.PATRON)
    client = w.browser()
    w.login(client, username)
    return client


def _privacy_request(w: World, kind: str = "access", to: str = "identity_verified") -> UUID:
    """A request registered by desk staff for the API's patron, moved on to `to` by an officer."""
    from bookwarden.privacy.requests import service as requests

    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_REQUESTS_REGISTER})
    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, OFFICER_PERMISSIONS)
    patron_id = UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        request = requests.register_for_patron(session, desk, patron_id, requests.RequestKind(kind))
        if to == "on_legal_hold":
            requests.hold(session, officer, request.id, "court order 12")
        if to in ("approved", "in_progress"):
            requests.decide(session, officer, request.id, requests.Decision.APPROVE)
        if to == "in_progress":
            requests.start(session, officer, request.id)
        return request.id


def _form_sent(w: World) -> tuple[str, str]:
    """(verification id, code) of a form naming the API's patron: the code read from the outbox."""
    from bookwarden.privacy.requests import form as request_form

    answer = request_form.submit(
        w.db,
        institution=w.tenant.slug,
        kind="access",
        by="email",
        value=w.records[library.PATRONS]["email"],
        source_address=fresh_address(),
    )
    with tenant_session(w.db, w.tenant.id) as session:
        [message] = session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(1)).all()
        [code] = re.findall(r"^\s+(\d{6})\s*$", open_mail(session, message).body, re.MULTILINE)
    return str(answer.verification_id), code


@route("POST", f"{PRIVACY}/me/requests")
def _(w):
    client = _linked_patron_browser(w)
    body = {"kind": "objection", "objection_scope": "third_party_disclosure"}
    return Call(client, "POST", f"{PRIVACY}/me/requests", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/me/requests")
def _(w):
    client = _linked_patron_browser(w)
    return Call(client, "GET", f"{PRIVACY}/me/requests", Action.PRIVACY_REQUEST_LISTED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_REGISTER})
    body = {"patron_id": w.records[library.PATRONS]["id"], "kind": "access"}
    return Call(client, "POST", f"{PRIVACY}/requests", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/requests")
def _(w):
    client = w.client(OFFICER_PERMISSIONS)
    return Call(client, "GET", f"{PRIVACY}/requests", Action.PRIVACY_REQUEST_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/requests/{{request_id}}")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w)}"
    return Call(w.client(OFFICER_PERMISSIONS), "GET", url, Action.PRIVACY_REQUEST_VIEWED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/decision")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w)}/decision"
    body = {"decision": "approve"}
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_APPROVED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/start")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w, to='approved')}/start"
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_STARTED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/complete")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w, 'restriction', to='in_progress')}/complete"
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_COMPLETED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/hold")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w)}/hold"
    body = {"reason": "litigation hold, case 2026-14"}
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_HELD, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/requests/{{request_id}}/resume")
def _(w):
    url = f"{PRIVACY}/requests/{_privacy_request(w, to='on_legal_hold')}/resume"
    return Call(w.client(OFFICER_PERMISSIONS), "POST", url, Action.PRIVACY_REQUEST_RESUMED, w.tenant.id)


@route("GET", f"{PRIVACY}/request-policy")
def _(w):
    url = f"{PRIVACY}/request-policy"
    return Call(w.client(OFFICER_PERMISSIONS), "GET", url, Action.PRIVACY_REQUEST_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/request-policy")
def _(w):
    url, body = f"{PRIVACY}/request-policy", {"respond_within_days": 20, "remind_before_days": 5}
    client = w.client(OFFICER_PERMISSIONS)
    return Call(client, "PUT", url, Action.PRIVACY_REQUEST_POLICY_CHANGED, w.tenant.id, json=body)


@route("DELETE", f"{PRIVACY}/restrictions/{{patron_id}}")
def _(w):
    from bookwarden.privacy.restrictions import service as restrictions

    patron_id = UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        restrictions.restrict(session, w.as_admin(), patron_id, None)
    url = f"{PRIVACY}/restrictions/{patron_id}"
    return Call(w.client(OFFICER_PERMISSIONS), "DELETE", url, Action.PRIVACY_RESTRICTION_LIFTED, w.tenant.id)


@route("POST", f"{PRIVACY}/requests/form")
def _(w):
    body = {"institution": w.tenant.slug, "kind": "access", "by": "email", "value": w.records[library.PATRONS]["email"]}
    return Call(
        w.browser(), "POST", f"{PRIVACY}/requests/form", Action.PRIVACY_REQUEST_RECEIVED, w.tenant.id, json=body
    )


@route("POST", f"{PRIVACY}/requests/form/verify")
def _(w):
    verification_id, code = _form_sent(w)
    body = {"institution": w.tenant.slug, "verification_id": verification_id, "code": code}
    url = f"{PRIVACY}/requests/form/verify"
    return Call(w.browser(), "POST", url, Action.PRIVACY_REQUEST_VERIFIED, w.tenant.id, json=body)


@route("POST", f"{PRIVACY}/inquiries/forward")
def _(w):
    from bookwarden.privacy.requests import form as request_form

    email = w.records[library.PATRONS]["email"]
    asked = request_form.submit(
        w.db, institution=None, kind="erasure", by="email", value=email, source_address=fresh_address()
    )
    body = {"reference": asked.inquiry_reference, "institution": w.tenant.slug}
    url = f"{PRIVACY}/inquiries/forward"
    return Call(w.browser(), "POST", url, Action.PRIVACY_INQUIRY_FORWARDED, PLATFORM_CHAIN, json=body)


# privacy: access packages, erasure certificates, the erasure policy


def _certificate(w: World) -> UUID:
    """A patron erased, certified with the key the app verifies against."""
    from bookwarden.audit import signing
    from bookwarden.privacy.subjects import erasure

    patron_id = UUID(w.new_record(library.PATRONS)["id"])
    key = signing.load_signing_key(w.app.state.settings)
    with tenant_session(w.db, w.tenant.id) as session:
        return erasure.erase_patron(session, patron_id, signing_key=key).id


@route("POST", f"{PRIVACY}/subject-exports")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_HANDLE})
    body = {"patron_id": w.records[library.PATRONS]["id"]}
    return Call(client, "POST", f"{PRIVACY}/subject-exports", Action.SUBJECT_EXPORT_BUILT, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/subject-exports/download/{{token}}")
def _(w):
    from bookwarden.privacy.subjects import export as subject_export

    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    with tenant_session(w.db, w.tenant.id) as session:
        package = subject_export.build_package(session, patron_id)
    anonymous = TestClient(w.app, raise_server_exceptions=False)  # the link is the credential
    return Call(anonymous, "GET", package.download_path, Action.SUBJECT_EXPORT_DOWNLOADED, w.tenant.id)


@route("GET", f"{PRIVACY}/erasure-certificates/{{certificate_id}}")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_HANDLE})
    url = f"{PRIVACY}/erasure-certificates/{_certificate(w)}"
    return Call(client, "GET", url, Action.ERASURE_CERTIFICATE_VIEWED, w.tenant.id)


@route("POST", f"{PRIVACY}/erasure-certificates/verify")
def _(w):
    client = w.client({Permission.PRIVACY_REQUESTS_HANDLE})
    document = client.get(f"{PRIVACY}/erasure-certificates/{_certificate(w)}").json()
    body = {name: document[name] for name in ("statement", "signature", "key_id", "public_key")}
    url = f"{PRIVACY}/erasure-certificates/verify"
    return Call(client, "POST", url, Action.ERASURE_CERTIFICATE_VERIFIED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/erasure-policy")
def _(w):
    client = w.client({Permission.POLICY_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/erasure-policy", Action.ERASURE_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/erasure-policy")
def _(w):
    client = w.client({Permission.POLICY_MANAGE})
    body = {"keep_posts_anonymized": True}
    return Call(client, "PUT", f"{PRIVACY}/erasure-policy", Action.ERASURE_POLICY_CHANGED, w.tenant.id, json=body)


# retention, legal holds, self-registration

RETENTION = f"{PRIVACY}/retention"
RETENTION_OFFICER = {Permission.PRIVACY_RETENTION_MANAGE}
HOLDS = f"{PRIVACY}/holds"
HOLD = {"reason": "Court order 2026-CV-0042", "category": "searches"}


def _retention_run(w: World) -> UUID:
    from bookwarden.privacy.retention import service as retention

    return retention.run_purge(w.db, w.tenant.id)


@route("GET", f"{RETENTION}/policies")
def _(w):
    url = f"{RETENTION}/policies"
    return Call(w.client(RETENTION_OFFICER), "GET", url, Action.RETENTION_POLICY_VIEWED, w.tenant.id)


def _period_recipe(category: str, days: int) -> None:
    @route("PUT", f"{RETENTION}/policies/{category}")
    def _(w):
        url = f"{RETENTION}/policies/{category}"
        client = w.client(RETENTION_OFFICER)
        return Call(client, "PUT", url, Action.APPROVAL_REQUESTED, w.tenant.id, json={"keep_days": days})


for _category, _days in (("loan_history", 400), ("searches", 30), ("posts", 365), ("inactive_patrons", 1000),
                         ("exports", 14), ("audit_segments", 3650)):  # fmt: skip
    _period_recipe(_category, _days)


@route("GET", f"{RETENTION}/preview")
def _(w):
    return Call(w.client(RETENTION_OFFICER), "GET", f"{RETENTION}/preview", Action.RETENTION_PREVIEWED, w.tenant.id)


@route("GET", f"{RETENTION}/runs")
def _(w):
    _retention_run(w)
    return Call(w.client(RETENTION_OFFICER), "GET", f"{RETENTION}/runs", Action.RETENTION_RUN_LISTED, w.tenant.id)


@route("GET", f"{RETENTION}/runs/{{run_id}}")
def _(w):
    url = f"{RETENTION}/runs/{_retention_run(w)}"
    return Call(w.client(RETENTION_OFFICER), "GET", url, Action.RETENTION_RUN_VIEWED, w.tenant.id)


@route("POST", HOLDS)
def _(w):
    client = w.client({Permission.PRIVACY_HOLDS_MANAGE})
    return Call(client, "POST", HOLDS, Action.LEGAL_HOLD_PLACED, w.tenant.id, json=HOLD)


@route("GET", HOLDS)
def _(w):
    return Call(w.client({Permission.PRIVACY_HOLDS_MANAGE}), "GET", HOLDS, Action.LEGAL_HOLD_LISTED, w.tenant.id)


@route("POST", f"{HOLDS}/{{hold_id}}/lift")
def _(w):
    client = w.client({Permission.PRIVACY_HOLDS_MANAGE})
    placed = client.post(HOLDS, json=HOLD)
    assert placed.status_code == 201, placed.text
    return Call(client, "POST", f"{HOLDS}/{placed.json()['id']}/lift", Action.LEGAL_HOLD_LIFTED, w.tenant.id)


SELF_REGISTRATION = "/api/v1/self-registration"


def _registration_open(w: World) -> None:
    opened = w.admin.put(f"{SELF_REGISTRATION}/settings", json={"enabled": True, "timezone": "UTC"})
    assert opened.status_code == 200, opened.text


@route("POST", SELF_REGISTRATION)
def _(w):
    _registration_open(w)
    body = {"institution": w.tenant.slug, "name": "Sam Reader", "email": "sam@example.org", "birth_date": "1990-05-01"}
    return Call(w.browser(), "POST", SELF_REGISTRATION, Action.SELF_REGISTERED, w.tenant.id, json=body)


@route("GET", f"{SELF_REGISTRATION}/settings")
def _(w):
    url = f"{SELF_REGISTRATION}/settings"
    return Call(w.admin, "GET", url, Action.SELF_REGISTRATION_SETTINGS_VIEWED, w.tenant.id)


@route("PUT", f"{SELF_REGISTRATION}/settings")
def _(w):
    url, body = f"{SELF_REGISTRATION}/settings", {"enabled": True, "timezone": "Europe/Paris"}
    return Call(w.admin, "PUT", url, Action.SELF_REGISTRATION_SETTINGS_CHANGED, w.tenant.id, json=body)


# anonymized publisher reports

REPORTS = "/api/v1/reports"
REPORT_CATALOGUE = b"item_id,title,publisher\nitem-9,Beloved,Vintage\nitem-1,Middlemarch,Penguin\n"
REPORT_ASK = {"publisher": "Vintage", "first_month": "2026-01", "months": 2}


def _reports(w: World, *permissions: Permission) -> TestClient:
    """A client holding `permissions`, the catalogue loaded first (by another client, in its own request)."""
    loader = w.client({Permission.REPORTS_CATALOGUE_MANAGE})
    assert loader.post(f"{REPORTS}/catalogue", content=REPORT_CATALOGUE).status_code == 200
    return w.client(set(permissions))


@route("POST", f"{REPORTS}/catalogue")
def _(w):
    client = w.client({Permission.REPORTS_CATALOGUE_MANAGE})
    url = f"{REPORTS}/catalogue"
    return Call(client, "POST", url, Action.CATALOGUE_IMPORTED, w.tenant.id, content=REPORT_CATALOGUE)


@route("GET", f"{REPORTS}/catalogue")
def _(w):
    client = _reports(w, Permission.REPORTS_PUBLISHERS)
    return Call(client, "GET", f"{REPORTS}/catalogue", Action.CATALOGUE_LISTED, w.tenant.id)


@route("GET", f"{REPORTS}/policy")
def _(w):
    client = w.client({Permission.REPORTS_PUBLISHERS})
    return Call(client, "GET", f"{REPORTS}/policy", Action.PUBLISHER_REPORT_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{REPORTS}/policy")
def _(w):
    client = w.client({Permission.REPORTS_POLICY_MANAGE})
    body = {"k": 12, "noise": True}
    return Call(client, "PUT", f"{REPORTS}/policy", Action.PUBLISHER_REPORT_POLICY_CHANGED, w.tenant.id, json=body)


@route("GET", f"{REPORTS}/budgets")
def _(w):
    client = w.client({Permission.REPORTS_PUBLISHERS})
    return Call(client, "GET", f"{REPORTS}/budgets", Action.PUBLISHER_BUDGET_LISTED, w.tenant.id)


@route("PUT", f"{REPORTS}/budgets")
def _(w):
    client = _reports(w, Permission.REPORTS_POLICY_MANAGE)
    body = {"publisher": "Vintage", "budget": 5.0}
    return Call(client, "PUT", f"{REPORTS}/budgets", Action.PUBLISHER_BUDGET_CHANGED, w.tenant.id, json=body)


@route("POST", f"{REPORTS}/publishers")
def _(w):
    client = _reports(w, Permission.REPORTS_PUBLISHERS)
    return Call(client, "POST", f"{REPORTS}/publishers", Action.PUBLISHER_REPORT_RELEASED, w.tenant.id, json=REPORT_ASK)


@route("GET", f"{REPORTS}/publishers")
def _(w):
    client = w.client({Permission.REPORTS_PUBLISHERS})
    return Call(client, "GET", f"{REPORTS}/publishers", Action.PUBLISHER_REPORT_LISTED, w.tenant.id)


@route("GET", f"{REPORTS}/publishers/{{report_id}}")
def _(w):
    client = _reports(w, Permission.REPORTS_PUBLISHERS)
    released = client.post(f"{REPORTS}/publishers", json=REPORT_ASK)
    assert released.status_code == 201, released.text
    url = f"{REPORTS}/publishers/{released.json()['report_id']}"
    return Call(client, "GET", url, Action.PUBLISHER_REPORT_VIEWED, w.tenant.id, params={"format": "csv"})


# notice mutes, an administrator's enrolment link after a reset, operators signing in


def _contact(w) -> str:
    with tenant_session(w.db, w.tenant.id) as session:
        return str(notices.add_security_contact(session, "security@alpha.example").id)


@route("GET", "/api/v1/security-contacts/mutes")
def _(w):
    _contact(w)
    return Call(w.admin, "GET", "/api/v1/security-contacts/mutes", Action.NOTICE_MUTES_VIEWED, w.tenant.id)


@route("GET", "/api/v1/security-contacts/{contact_id}/mutes")
def _(w):
    url = f"/api/v1/security-contacts/{_contact(w)}/mutes"
    return Call(w.admin, "GET", url, Action.NOTICE_MUTES_VIEWED, w.tenant.id)


@route("PUT", "/api/v1/security-contacts/{contact_id}/mutes")
def _(w):
    url = f"/api/v1/security-contacts/{_contact(w)}/mutes"
    body = {"muted": ["api_token_created", "operator_grant_used"]}
    return Call(w.admin, "PUT", url, Action.NOTICE_MUTES_CHANGED, w.tenant.id, json=body)


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


OPERATOR_AUTH = "/api/v1/operator/auth"
OPERATOR_PASSWORD = "granite orchard lantern 93 violet"


def _operator_link(w, username: str = "olga.ops") -> str:
    with platform_session(w.db) as session:
        made = operator_accounts.create_operator(session, w.db.keyring, w.db.master, username, "operator_ops")
    return made.url.split("#token=", 1)[1]


def _operator_enrolled(w, username: str = "olga.ops") -> pyotp.TOTP:
    token, client = _operator_link(w, username), w.browser()
    totp = pyotp.TOTP(client.post(f"{OPERATOR_AUTH}/enrolment", json={"token": token}).json()["secret"])
    body = {"token": token, "password": OPERATOR_PASSWORD, "code": totp.now()}
    assert client.post(f"{OPERATOR_AUTH}/enrolment/complete", json=body).status_code == 200
    with platform_session(w.db) as session:  # the confirming code is spent; the clock stands still here
        session.execute(text("UPDATE operator_accounts SET totp_last_step = totp_last_step - 2"))
    return totp


def _operator_pending(w) -> tuple[TestClient, pyotp.TOTP]:
    totp, client = _operator_enrolled(w), w.browser()
    body = {"username": "olga.ops", "password": OPERATOR_PASSWORD}
    assert client.post(f"{OPERATOR_AUTH}/login", json=body).status_code == 200
    return client, totp


def _operator_signed_in(w) -> TestClient:
    client, totp = _operator_pending(w)
    assert client.post(f"{OPERATOR_AUTH}/mfa", json={"code": totp.now()}).status_code == 200
    return client


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


# privacy: preferences, consents, cookie choices, one-click unsubscribe, disclosures

PREFERENCE_CHOICE = {"choices": [{"channel": "email", "topic": "events", "subscribed": True}], "notice_version": "v1"}
COOKIES = {"analytics": True, "preferences": False, "notice_version": "cookies-v1"}


def _own_patron_browser(w: World) -> TestClient:
    """A browser signed in as a patron account linked to a patron record (what /privacy/me/... needs)."""
    from bookwarden.identity import roles as access

    username = f"reader-{uuid.uuid4().hex[:6]}"
    patron_id = UUID(w.records[library.PATRONS]["id"])  # made through the API first, in its own session
    account = w.account(username, kind=AccountKind.PATRON)
    with tenant_session(w.db, w.tenant.id) as session:
        session.get(Account, (w.tenant.id, account.id)).patron_id = patron_id
        access.grant_role(session, w.as_admin(), account.id, BuiltinRole.PATRON)
    client = w.browser()
    w.login(client, username)
    return client


def _preferences_staff(w: World) -> TestClient:
    return w.client({Permission.PRIVACY_PREFERENCES_MANAGE})


def _unsubscribe_link(w: World) -> str:
    from bookwarden.privacy.consent import unsubscribe
    from bookwarden.privacy.consent.service import Topic

    token = unsubscribe.sign(w.db.master, w.tenant.id, UUID(w.records[library.PATRONS]["id"]), Topic.NEWSLETTERS)
    return f"{unsubscribe.PATH}{token}"


def _disclosure(w: World) -> UUID:
    from bookwarden.privacy.disclosures import service as disclosures

    officer = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), w.tenant.id, {Permission.PRIVACY_DISCLOSURES_MANAGE})
    patron_id = UUID(w.records[library.PATRONS]["id"])
    with tenant_session(w.db, w.tenant.id) as session:
        made = disclosures.disclose(session, actor=officer, **DISCLOSURE, patron_ids=[patron_id])
        return made.disclosure.id


DISCLOSURE = {
    "recipient": "Metro Analytics Ltd",
    "kind": "usage_analysis",
    "purpose": "usage_analysis",
    "basis": "legitimate_interests",
    "categories": ["circulation_history"],
}


@route("GET", f"{PRIVACY}/me/preferences")
def _(w):
    return Call(_own_patron_browser(w), "GET", f"{PRIVACY}/me/preferences", Action.PREFERENCES_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/me/preferences")
def _(w):
    client, url = _own_patron_browser(w), f"{PRIVACY}/me/preferences"
    return Call(client, "PUT", url, Action.PREFERENCES_CHANGED, w.tenant.id, json=PREFERENCE_CHOICE)


@route("GET", f"{PRIVACY}/patrons/{{patron_id}}/preferences")
def _(w):
    url = f"{PRIVACY}/patrons/{w.records[library.PATRONS]['id']}/preferences"
    return Call(_preferences_staff(w), "GET", url, Action.PREFERENCES_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/patrons/{{patron_id}}/preferences")
def _(w):
    url = f"{PRIVACY}/patrons/{w.records[library.PATRONS]['id']}/preferences"
    body = {**PREFERENCE_CHOICE, "method": "form"}
    return Call(_preferences_staff(w), "PUT", url, Action.PREFERENCES_CHANGED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/me/consents")
def _(w):
    return Call(_own_patron_browser(w), "GET", f"{PRIVACY}/me/consents", Action.CONSENTS_VIEWED, w.tenant.id)


@route("GET", f"{PRIVACY}/patrons/{{patron_id}}/consents")
def _(w):
    url = f"{PRIVACY}/patrons/{w.records[library.PATRONS]['id']}/consents"
    return Call(_preferences_staff(w), "GET", url, Action.CONSENTS_VIEWED, w.tenant.id)


@route("GET", "/api/v1/portal/{tenant_slug}/cookie-choice")
def _(w):
    url = f"/api/v1/portal/{w.tenant.slug}/cookie-choice"
    return Call(w.browser(), "GET", url, Action.COOKIE_CHOICE_VIEWED, w.tenant.id)


@route("PUT", "/api/v1/portal/{tenant_slug}/cookie-choice")
def _(w):
    url = f"/api/v1/portal/{w.tenant.slug}/cookie-choice"
    return Call(w.browser(), "PUT", url, Action.COOKIE_CHOICE_RECORDED, w.tenant.id, json=COOKIES)


@route("GET", f"{PRIVACY}/me/cookie-choice")
def _(w):
    url = f"{PRIVACY}/me/cookie-choice"
    return Call(_own_patron_browser(w), "GET", url, Action.COOKIE_CHOICE_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/me/cookie-choice")
def _(w):
    url = f"{PRIVACY}/me/cookie-choice"
    return Call(_own_patron_browser(w), "PUT", url, Action.COOKIE_CHOICE_RECORDED, w.tenant.id, json=COOKIES)


@route("GET", "/api/v1/unsubscribe/{token}")
def _(w):
    return Call(w.browser(), "GET", _unsubscribe_link(w), Action.UNSUBSCRIBE_VIEWED, w.tenant.id)


@route("POST", "/api/v1/unsubscribe/{token}")
def _(w):
    return Call(w.browser(), "POST", _unsubscribe_link(w), Action.UNSUBSCRIBED, w.tenant.id)


@route("POST", f"{PRIVACY}/disclosures")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    body = {**DISCLOSURE, "patron_ids": [w.records[library.PATRONS]["id"]]}
    return Call(client, "POST", f"{PRIVACY}/disclosures", Action.DISCLOSED, w.tenant.id, json=body)


@route("GET", f"{PRIVACY}/disclosures")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/disclosures", Action.DISCLOSURE_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/disclosures/{{disclosure_id}}")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/disclosures/{_disclosure(w)}", Action.DISCLOSURE_VIEWED, w.tenant.id)


@route("GET", f"{PRIVACY}/me/disclosures")
def _(w):
    url = f"{PRIVACY}/me/disclosures"
    return Call(_own_patron_browser(w), "GET", url, Action.DISCLOSURE_LISTED, w.tenant.id)


@route("GET", f"{PRIVACY}/disclosure-policy")
def _(w):
    client = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE})
    return Call(client, "GET", f"{PRIVACY}/disclosure-policy", Action.DISCLOSURE_POLICY_VIEWED, w.tenant.id)


@route("PUT", f"{PRIVACY}/disclosure-policy/{{kind}}")
def _(w):
    client, url = w.client({Permission.PRIVACY_DISCLOSURES_MANAGE}), f"{PRIVACY}/disclosure-policy/legal_request"
    return Call(client, "PUT", url, Action.DISCLOSURE_POLICY_CHANGED, w.tenant.id, json={"notify": False})


@route("POST", f"{PRIVACY}/mailings")
def _(w):
    client = w.client({Permission.MAILINGS_SEND})
    body = {"topic": "newsletters", "subject": "Alpha Library news", "message": "The reading room reopens."}
    return Call(client, "POST", f"{PRIVACY}/mailings", Action.MAILING_SENT, w.tenant.id, json=body)


# -- the route test ----------------------------------------------------------------------------


def _api_routes(routes):
    for r in routes:
        if hasattr(r, "original_router"):  # an included router
            yield from _api_routes(r.original_router.routes)
        else:
            yield r


def _route_keys() -> list[tuple[str, str]]:
    app = create_app(None, Settings())
    keys = set()
    for r in _api_routes(app.routes):
        for method in getattr(r, "methods", None) or {"GET"}:
            if method != "HEAD" and r.path not in EXEMPT:
                keys.add((method, r.path))
    return sorted(keys, key=lambda k: (k[1], k[0]))


ROUTES = _route_keys()


@pytest.mark.parametrize("method, path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_writes_its_audit_event(world, method, path):
    recipe = ROUTE_RECIPES.get((method, path))
    assert recipe is not None, (
        f"{method} {path} has no recipe: add one to ROUTE_RECIPES in tests/invariants/test_audit_coverage.py "
        "(a valid call by an authorised caller, and the audit action it must record)"
    )
    call = recipe(world)
    matched = next(r for r in _api_routes(world.app.routes) if getattr(r, "path", None) == path)
    assert matched.path_regex.match(call.url) and call.method == method, f"the recipe calls {call.method} {call.url}"
    before = world.trail.heads()
    response = call.send()
    assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
    event = _found(world.trail.since(before), call.expect, call.chain, f"{method} {path}")
    assert event.request_id == response.headers["x-request-id"], "the event names another request"


def test_the_exempt_routes_are_exactly_the_operational_ones(app):
    paths = {r.path for r in _api_routes(app.routes)}
    assert set(EXEMPT) <= paths, set(EXEMPT) - paths
    assert all(p in {"/healthz", "/metrics", "/openapi.json"} or p.startswith(("/docs", "/redoc")) for p in EXEMPT)


def test_every_recipe_names_a_route_that_exists():
    assert set(ROUTE_RECIPES) <= set(ROUTES), set(ROUTE_RECIPES) - set(ROUTES)


# -- focused: what the events say ------------------------------------------------------------------


def test_a_patron_read_records_who_read_which_patron_in_which_request(world):
    patron = world.records[library.PATRONS]
    token_id = UUID(world.staff.get("/api/v1/auth/me").json()["id"])
    before = world.trail.heads()
    response = world.staff.get(f"/api/v1/patrons/{patron['id']}", headers={"X-Request-ID": "read-0001-patron"})
    assert response.status_code == 200
    (event,) = world.trail.since(before)
    assert (event.chain, event.action, event.outcome) == (world.tenant.id, "patron.viewed", "succeeded")
    assert (event.actor_kind, event.actor_id, event.grant_id) == ("api_token", token_id, None)
    assert (event.target_kind, event.target_id) == ("patron", UUID(patron["id"]))
    assert (event.request_id, event.source_address) == (response.headers["x-request-id"], "testclient")
    assert event.request_id.startswith("read-0001-patron-")  # the caller's id, made unique per request
    assert patron["email"] not in json.dumps(event.details) and patron["name"] not in json.dumps(event.details)


def test_a_list_records_the_ids_it_returned_and_a_change_the_fields_not_the_values(world):
    records = world.records
    before = world.trail.heads()
    listed = world.staff.get("/api/v1/loans").json()["items"]
    assert world.staff.patch(f"/api/v1/patrons/{records[library.PATRONS]['id']}", json={"name": "Renamed"}).is_success
    listing, change = world.trail.since(before)
    assert listing.action == "loan.listed"
    assert listing.details == {"ids": [item["id"] for item in listed], "count": len(listed)}
    assert change.action == "patron.changed" and change.details == {"fields": ["name"]}


def test_a_lookup_records_the_index_and_the_ids_never_the_value(world):
    patron = world.records[library.PATRONS]
    before = world.trail.heads()
    found = world.staff.post("/api/v1/patrons/lookup", json={"by": "email", "value": patron["email"]}).json()
    (event,) = world.trail.since(before)
    assert event.action == "patron.looked_up"
    assert event.details == {"by": "email", "ids": [f["id"] for f in found], "count": 1}
    assert patron["email"] not in json.dumps(event.details)


def test_a_failed_sign_in_on_an_unknown_account_is_recorded_and_answered_like_any_other(world):
    world.account("lena")

    def attempt(username, password=PASSWORD, institution=None):
        body = {"institution": institution or world.tenant.slug, "username": username, "password": password}
        response = world.browser().post("/api/v1/auth/login", json=body)
        return response.status_code, {k: v for k, v in response.json().items() if k != "instance"}

    before = world.trail.heads()
    unknown = attempt("nobody-here")
    wrong = attempt("lena", "not the password at all")
    assert unknown == wrong and unknown[0] == 401  # nothing tells the caller which it was
    seen = world.trail.since(before)
    failures = [e for e in seen if e.action == "auth.sign_in.failed"]
    assert [(e.chain, e.outcome, e.details["reason"]) for e in failures] == [
        (world.tenant.id, "denied", "unknown account"),
        (world.tenant.id, "denied", "wrong password"),
    ]
    assert failures[0].target_id is None and "nobody-here" not in json.dumps([e.details for e in seen])

    before = world.trail.heads()
    assert attempt("nobody-here", institution="no-such-place") == unknown
    failure = next(e for e in world.trail.since(before) if e.action == "auth.sign_in.failed")
    assert (failure.chain, failure.details) == (PLATFORM_CHAIN, {"reason": "unknown institution"})


def test_an_operator_working_under_a_grant_leaves_events_carrying_the_grant(world):
    patron = world.records[library.PATRONS]
    with platform_session(world.db) as session:
        operator_id = session.execute(text("SELECT id FROM operator_tokens")).scalar_one()
    operator = Principal(PrincipalKind.OPERATOR_TOKEN, operator_id, None, PLATFORM_PERMISSIONS)
    grant = world.grant_requested(operator)
    with tenant_session(world.db, world.tenant.id) as session:
        grants.approve_grant(session, world.as_admin(), grant.id)
    before = world.trail.heads()
    headers = {"X-Operator-Grant": str(grant.id)}
    assert world.operator.get(f"/api/v1/patrons/{patron['id']}", headers=headers).status_code == 200
    assert world.operator.get("/api/v1/loans", headers=headers).status_code == 200
    seen = world.trail.since(before)
    assert [e.action for e in seen] == ["operator_grant.used", "patron.viewed", "operator_grant.used", "loan.listed"]
    assert {(e.chain, e.actor_kind, e.actor_id, e.grant_id) for e in seen} == {
        (world.tenant.id, "operator_token", operator_id, grant.id)
    }


def test_a_refused_request_records_access_denied_with_the_permission(world):
    reader = world.client(LIBRARY_READ)
    before = world.trail.heads()
    response = reader.post("/api/v1/patrons", json={"name": "Someone"}, headers={"X-Request-ID": "denied-0001"})
    assert response.status_code == 403
    (event,) = world.trail.since(before)
    assert (event.chain, event.action, event.outcome) == (world.tenant.id, "access.denied", "denied")
    assert event.details["permission"] == "patrons.write" and event.request_id == response.headers["x-request-id"]


# -- the command line ------------------------------------------------------------------------------


@dataclass
class Command:
    """The command under test (run as given) and the event it must leave (None: any) in which chain."""

    args: list[str]
    expect: Action | None
    chain: UUID | None


class Console:
    """The command line pointed at the committed test database; the trail read as its owner sees it."""

    def __init__(self, db, admin_url, monkeypatch, home):
        self.db, self.admin_url, self.monkeypatch, self.home = db, admin_url, monkeypatch, home
        self.undo: list[Callable[[], None]] = []

    def run(self, *args: str):
        get_settings.cache_clear()
        result = CliRunner().invoke(cli.app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
        return result

    def tenant(self, slug: str = "north") -> UUID:
        with platform_session(self.db) as session:
            return tenancy.create_tenant(session, self.db.keyring, self.home, slug, "North University").id

    def later(self, undo: Callable[[], None]) -> None:
        """Run `undo` when the test ends, before the database is emptied."""
        self.undo.append(undo)

    def _query(self, sql: str, params=()) -> list[dict]:
        url = provision.libpq(self.admin_url.set(database=TEST_DATABASE))
        with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            return conn.execute(sql, params).fetchall()

    def heads(self) -> dict[UUID, int]:
        return {
            r["tenant_id"]: r["seq"]
            for r in self._query("SELECT tenant_id, max(seq) AS seq FROM audit_events GROUP BY tenant_id")
        }

    def since(self, heads: dict[UUID, int]) -> list[Seen]:
        rows = self._query(f"SELECT {COLUMNS} FROM audit_events ORDER BY tenant_id, seq")  # noqa: S608
        return [_seen(r) for r in rows if r["seq"] > heads.get(r["tenant_id"], 0)]


@pytest.fixture
def console(cli_env, committed_db, admin_url, monkeypatch, home):  # noqa: F811 - the fixture imported above
    runner = Console(committed_db, admin_url, monkeypatch, home)
    yield runner
    for undo in reversed(runner.undo):
        undo()
    get_settings.cache_clear()


CommandRecipe = Callable[[Console], Command]
COMMAND_RECIPES: dict[tuple[str, ...], CommandRecipe] = {}


def command(*path: str) -> Callable[[CommandRecipe], CommandRecipe]:
    def register(recipe: CommandRecipe) -> CommandRecipe:
        assert path not in COMMAND_RECIPES, path
        COMMAND_RECIPES[path] = recipe
        return recipe

    return register


@command("db", "url")
def _(c):
    return Command(["db", "url"], Action.DATABASE_URL_SHOWN, PLATFORM_CHAIN)


@command("db", "migrate")
def _(c):
    return Command(["db", "migrate"], Action.DATABASE_MIGRATED, PLATFORM_CHAIN)


@command("db", "stop")
def _(c):
    # The embedded server under BOOKWARDEN_HOME is not running (the tests' server lives elsewhere).
    return Command(["db", "stop"], Action.DATABASE_STOPPED, PLATFORM_CHAIN)


@command("tenant", "create")
def _(c):
    return Command(["tenant", "create", "north", "North University"], Action.TENANT_CREATED, PLATFORM_CHAIN)


@command("tenant", "list")
def _(c):
    c.tenant()
    return Command(["tenant", "list"], Action.TENANT_LISTED, PLATFORM_CHAIN)


@command("tenant", "suspend")
def _(c):
    c.tenant()
    return Command(
        ["tenant", "suspend", "north", "--reason", "contract ended"], Action.TENANT_SUSPENDED, PLATFORM_CHAIN
    )


@command("tenant", "resume")
def _(c):
    c.tenant()
    c.run("tenant", "suspend", "north", "--reason", "contract ended")
    return Command(["tenant", "resume", "north"], Action.TENANT_RESUMED, PLATFORM_CHAIN)


@command("token", "create")
def _(c):
    return Command(["token", "create", "--tenant", "north", "--days", "1"], Action.TOKEN_ISSUED, c.tenant())


@command("keys", "rotate-tenant")
def _(c):
    return Command(["keys", "rotate-tenant", "north"], Action.KEY_ROTATED, c.tenant())


@command("keys", "rotate-master")
def _(c):
    from bookwarden.crypto.master import MasterKeys, key_file, load_master_keys, write_key_file

    # Key-file mode (a key from the environment is rotated in the secret store, not here), with the
    # tests' own key; afterwards every role password and tenant key goes back to it.
    original = c.db.keyring.master
    c.monkeypatch.delenv("BOOKWARDEN_MASTER_KEY")
    settings = Settings(home=c.home, master_key=None)
    write_key_file(key_file(settings), original.current)

    def restore() -> None:
        provision.provision(c.admin_url, TEST_DATABASE, original.current)
        rotated = load_master_keys(settings)
        c.db.keyring.rewrap_under_master(MasterKeys(original.current_id, {**rotated.keys, **original.keys}))
        c.db.keyring.master = original

    c.later(restore)
    return Command(["keys", "rotate-master"], Action.KEY_ROTATED, PLATFORM_CHAIN)


@command("serve")
def _(c):
    import uvicorn

    # The server itself does not start: its start is what is recorded, before it listens.
    c.monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    return Command(["serve", "--port", "8999"], Action.SERVICE_STARTED, PLATFORM_CHAIN)


@command("worker")
def _(c):
    from bookwarden.jobs import worker

    c.monkeypatch.setattr(worker.Worker, "run_forever", lambda self, stop: None)
    c.monkeypatch.setattr(worker, "stop_on_signals", lambda stop: None)  # the test runner keeps its signals
    return Command(["worker", "--name", "coverage"], Action.SERVICE_STARTED, PLATFORM_CHAIN)


@command("demo")
def _(c):
    return Command(["demo", "--patrons", "2"], Action.TOKEN_ISSUED, None)


@command("audit", "search")
def _(c):
    return Command(["audit", "search", "--tenant", "north"], Action.AUDIT_SEARCHED, c.tenant())


@command("audit", "public-key")
def _(c):
    return Command(["audit", "public-key"], Action.AUDIT_KEY_VIEWED, PLATFORM_CHAIN)


@command("audit", "rotate-signing-key")
def _(c):
    return Command(["audit", "rotate-signing-key"], Action.KEY_ROTATED, PLATFORM_CHAIN)


@command("audit", "checkpoint")
def _(c):
    c.tenant()
    c.run("token", "create", "--tenant", "north", "--days", "1")  # an event of its own to seal
    return Command(["audit", "checkpoint", "--tenant", "north"], Action.AUDIT_CHECKPOINTED, None)


@command("audit", "prove")
def _(c):
    c.tenant()
    c.run("token", "create", "--tenant", "north", "--days", "1")
    c.run("audit", "checkpoint", "--tenant", "north")
    return Command(["audit", "prove", "--tenant", "north", "--seq", "1"], Action.AUDIT_PROVED, None)


@command("audit", "verify")
def _(c):
    return Command(["audit", "verify", "--tenant", "north"], Action.AUDIT_VERIFIED, c.tenant())


@command("audit", "export")
def _(c):
    output = str(c.home / "north-audit.tar.gz")
    return Command(["audit", "export", "--tenant", "north", "--output", output], Action.AUDIT_EXPORTED, c.tenant())


@command("usage", "report")
def _(c):
    c.tenant()
    return Command(["usage", "report"], Action.USAGE_REPORTED, PLATFORM_CHAIN)


@command("operator", "create")
def _(c):
    args = ["operator", "create", "olga.ops", "--role", "operator_ops"]
    return Command(args, Action.OPERATOR_ACCOUNT_CREATED, PLATFORM_CHAIN)


@command("operator", "enrolment-link")
def _(c):
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    return Command(["operator", "enrolment-link", "olga.ops"], Action.OPERATOR_ENROLMENT_LINK_ISSUED, PLATFORM_CHAIN)


@command("operator", "disable")
def _(c):
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    return Command(["operator", "disable", "olga.ops"], Action.OPERATOR_ACCOUNT_DISABLED, PLATFORM_CHAIN)


@command("operator", "enable")
def _(c):
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    c.run("operator", "disable", "olga.ops")
    return Command(["operator", "enable", "olga.ops"], Action.OPERATOR_ACCOUNT_ENABLED, PLATFORM_CHAIN)


@command("operator", "list")
def _(c):
    c.run("operator", "create", "olga.ops", "--role", "operator_ops")
    return Command(["operator", "list"], Action.OPERATOR_ACCOUNT_LISTED, PLATFORM_CHAIN)


@command("privacy", "requests", "list")
def _(c):
    return Command(["privacy", "requests", "list", "--tenant", "north"], Action.PRIVACY_REQUEST_LISTED, c.tenant())


@command("privacy", "requests", "show")
def _(c):
    from bookwarden.privacy.requests import service as requests

    tenant_id = c.tenant()
    desk = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, {Permission.PRIVACY_REQUESTS_REGISTER})
    with tenant_session(c.db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Asking Patron"))
        request = requests.register_for_patron(session, desk, patron.id, requests.RequestKind.ACCESS)
    args = ["privacy", "requests", "show", str(request.id), "--tenant", "north"]
    return Command(args, Action.PRIVACY_REQUEST_VIEWED, tenant_id)


@command("privacy", "escalations", "list")
def _(c):
    _escalated(c.db, c.tenant())
    return Command(["privacy", "escalations", "list", "--view", "all"], Action.DPO_ESCALATION_LISTED, PLATFORM_CHAIN)


@command("privacy", "escalations", "acknowledge")
def _(c):
    tenant_id = c.tenant()
    args = ["privacy", "escalations", "acknowledge", str(_escalated(c.db, tenant_id)), "--tenant", "north"]
    return Command(args, Action.DPO_ESCALATION_ACKNOWLEDGED, tenant_id)


@command("privacy", "records")
def _(c):
    args = ["privacy", "records", "--tenant", "north", "--format", "csv"]
    return Command(args, Action.RECORDS_OF_PROCESSING_EXPORTED, c.tenant())


def _erased_certificate(c: Console) -> tuple[UUID, UUID]:
    """(tenant, certificate) of a patron of "north" erased and certified with the console's key."""
    from bookwarden.audit import signing
    from bookwarden.privacy.subjects import erasure

    tenant_id = c.tenant()
    with tenant_session(c.db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Erased Patron"))
    get_settings.cache_clear()
    key = signing.load_signing_key(get_settings())
    with tenant_session(c.db, tenant_id) as session:
        return tenant_id, erasure.erase_patron(session, patron.id, signing_key=key).id


@command("privacy", "export")
def _(c):
    tenant_id = c.tenant()
    with tenant_session(c.db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Asking Patron"))
    args = ["privacy", "export", "--tenant", "north", "--patron", str(patron.id)]
    return Command(args, Action.SUBJECT_EXPORT_BUILT, tenant_id)


@command("privacy", "certificate", "show")
def _(c):
    tenant_id, certificate = _erased_certificate(c)
    args = ["privacy", "certificate", "show", str(certificate), "--tenant", "north"]
    return Command(args, Action.ERASURE_CERTIFICATE_VIEWED, tenant_id)


@command("privacy", "certificate", "verify")
def _(c):
    tenant_id, certificate = _erased_certificate(c)
    args = ["privacy", "certificate", "verify", str(certificate), "--tenant", "north"]
    return Command(args, Action.ERASURE_CERTIFICATE_VERIFIED, tenant_id)


@command("retention", "preview")
def _(c):
    return Command(["retention", "preview", "--tenant", "north"], Action.RETENTION_PREVIEWED, c.tenant())


@command("retention", "policies")
def _(c):
    return Command(["retention", "policies", "--tenant", "north"], Action.RETENTION_POLICY_VIEWED, c.tenant())


@command("retention", "set")
def _(c):
    args = ["retention", "set", "--tenant", "north", "--category", "searches", "--days", "30"]
    return Command(args, Action.APPROVAL_REQUESTED, c.tenant())


@command("retention", "run")
def _(c):
    return Command(["retention", "run", "--tenant", "north"], Action.RETENTION_RUN_COMPLETED, c.tenant())


@command("retention", "runs")
def _(c):
    tenant_id = c.tenant()
    c.run("retention", "run", "--tenant", "north")
    return Command(["retention", "runs", "--tenant", "north"], Action.RETENTION_RUN_LISTED, tenant_id)


def _report_catalogue(c: Console) -> str:
    """The catalogue file of the reports commands, loaded into "north" (made here)."""
    file = c.home.parent / "report-catalogue.csv"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(REPORT_CATALOGUE)
    c.tenant()
    c.run("reports", "catalogue-import", str(file), "--tenant", "north")
    return str(file)


@command("reports", "catalogue-import")
def _(c):
    file = c.home.parent / "report-catalogue.csv"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(REPORT_CATALOGUE)
    args = ["reports", "catalogue-import", str(file), "--tenant", "north"]
    return Command(args, Action.CATALOGUE_IMPORTED, c.tenant())


@command("reports", "policy")
def _(c):
    args = ["reports", "policy", "--tenant", "north", "--k", "15"]
    return Command(args, Action.PUBLISHER_REPORT_POLICY_CHANGED, c.tenant())


@command("reports", "budget")
def _(c):
    _report_catalogue(c)
    args = ["reports", "budget", "--tenant", "north", "--publisher", "Vintage", "--budget", "4"]
    return Command(args, Action.PUBLISHER_BUDGET_CHANGED, None)


@command("reports", "publishers")
def _(c):
    _report_catalogue(c)
    months = ["--from", "2026-01", "--to", "2026-02"]
    args = ["reports", "publishers", "--tenant", "north", "--publisher", "Vintage", *months]
    return Command(args, Action.PUBLISHER_REPORT_RELEASED, None)


@command("reports", "list")
def _(c):
    return Command(["reports", "list", "--tenant", "north"], Action.PUBLISHER_REPORT_LISTED, c.tenant())


@command("privacy", "disclosures")
def _(c):
    return Command(["privacy", "disclosures", "--tenant", "north"], Action.DISCLOSURE_LISTED, c.tenant())


def _commands(typer_app, prefix: tuple[str, ...] = ()):
    """Every command but those that run with no database (cli.OFFLINE_COMMANDS, each with its reason)."""
    for info in typer_app.registered_commands:
        if (*prefix, info.name) in cli.OFFLINE_COMMANDS:
            continue
        yield (*prefix, info.name or info.callback.__name__), info.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


COMMANDS = sorted(path for path, _ in _commands(cli.app))


def test_every_command_declares_the_one_permission_it_needs():
    for path, callback in _commands(cli.app):
        declared = getattr(callback, "required_permission", None)
        assert isinstance(declared, Permission), (
            f"bookwarden {' '.join(path)} declares no permission: register it with "
            "@command(group, name, Permission.X) in cli.py"
        )
    assert len(COMMANDS) >= 13


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_writes_its_audit_event(console, path):
    recipe = COMMAND_RECIPES.get(path)
    assert recipe is not None, (
        f"bookwarden {' '.join(path)} has no recipe: add one to COMMAND_RECIPES in "
        "tests/invariants/test_audit_coverage.py (a valid run, and the audit action it must record)"
    )
    run = recipe(console)
    assert tuple(run.args[: len(path)]) == path, f"the recipe runs bookwarden {' '.join(run.args)}"
    before = console.heads()
    console.run(*run.args)
    seen = console.since(before)
    _found(seen, run.expect, run.chain, f"bookwarden {' '.join(path)}")
    ran = _found(seen, Action.CONSOLE_COMMAND, PLATFORM_CHAIN, f"bookwarden {' '.join(path)}")
    assert ran.details["os_user"] == cli.os_user() and ran.details["command"] == " ".join(path)
    assert ran.actor_kind == "system" and ran.source_address == "console"


def test_every_command_recipe_names_a_command_that_exists():
    assert set(COMMAND_RECIPES) <= set(COMMANDS), set(COMMAND_RECIPES) - set(COMMANDS)


def test_a_refused_command_records_the_denial_with_the_permission_and_the_os_user(console, monkeypatch, capsys):
    powerless = Principal(PrincipalKind.SYSTEM, uuid.uuid4(), None, frozenset({Permission.PLATFORM_DATABASE_MANAGE}))
    monkeypatch.setattr(cli, "console_principal", lambda: powerless)
    monkeypatch.setattr("sys.argv", ["bookwarden", "tenant", "create", "west", "West College"])
    before = console.heads()
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2 and "platform.tenants.manage" in capsys.readouterr().err
    (event,) = console.since(before)
    assert (event.chain, event.action, event.outcome) == (PLATFORM_CHAIN, "access.denied", "denied")
    assert event.details == {
        "os_user": cli.os_user(),
        "command": "tenant create",
        "problem": "forbidden",
        "permission": "platform.tenants.manage",
    }
    with platform_session(console.db) as session:
        assert tenancy.list_tenants(session) == []  # and nothing was done
