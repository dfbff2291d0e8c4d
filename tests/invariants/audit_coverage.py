"""The audit-coverage harness: the world a recipe builds on, the trail it reads, and the two
registries each area's tests/<area>/audit_recipes.py fills (`@route`, `@command`).

The test that runs every recipe is tests/invariants/test_audit_coverage.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any
from uuid import UUID

import psycopg
import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.models import GrantScope
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import (
    BUILTIN_PERMISSIONS,
    LIBRARY_READ,
    LIBRARY_WRITE,
    PLATFORM_PERMISSIONS,
    BuiltinRole,
)
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db import provision
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import links, passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountKind, AccountStatus
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.library import records as library
from bookwarden.tenancy import service as tenancy
from tests.conftest import TEST_DATABASE
from tests.e2e.test_cli import cli_env, granted, map_console  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.helpers import PATHS, fresh_address, populate, stored_hash
from tests.identity.test_mfa import SoftwareAuthenticator

PASSWORD = "violet tractor mango 42 harbour"
OPERATOR_PASSWORD = "granite orchard lantern 93 violet"
OPERATOR_AUTH = "/api/v1/operator/auth"
NEW_PASSWORD = "amber lantern quietly 77 orchard"
ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
ORIGIN_HEADERS = {"X-Requested-With": "fetch"}

# The only routes that record nothing, and why. Everything else must leave an event.
EXEMPT = {
    # Liveness probe for load balancers, every few seconds: it reads nothing of anyone's and does
    # nothing; an event per probe would bury the trail (and the metering) in noise.
    "/healthz": "liveness probe: touches no data, no access decision",
    # Prometheus scrapes it every few seconds: request counts and latencies per route, no personal data.
    # A scrape without the metrics token is refused and that refusal is recorded (auth.rejected).
    "/metrics": "operational counters for the scraper holding the metrics token: no data; refusals are recorded",
    # The API's description, the same bytes for everyone: no data behind it, no decision.
    "/openapi.json": "the published API description: public, the same for everyone",
    # The documentation pages, only where BOOKWARDEN_API_DOCS=true (api/docs.py): they render
    # /openapi.json in a browser and hold no data of their own. (No /docs/oauth2-redirect: no OAuth2 flow.)
    "/docs": "documentation page (Swagger UI), when turned on: public, static",
    "/redoc": "documentation page (ReDoc), a /docs page by another name, when turned on: public, static",
    # The pages' stylesheet and scripts (web/static/): the same files for everyone, no data behind them.
    "/static": "the pages' own stylesheet, scripts and icon: public, the same for everyone",
}


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
    "coalesce(e.source_address, c.source_address) AS source_address, details"
)
# The source address is kept apart from the hashed event since migration 0026 (audit_event_contexts).
EVENTS = "audit_events e LEFT JOIN audit_event_contexts c USING (tenant_id, seq)"


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
                    text(f"SELECT {COLUMNS} FROM {EVENTS} WHERE seq > :after ORDER BY seq"),  # noqa: S608
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
                account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
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

    # operators (identity/operators): enrolled with their one-time link, signed in with the second factor

    def operator_link(self, username: str = "olga.ops", role: str = "operator_ops") -> str:
        with platform_session(self.db) as session:
            made = operator_accounts.create_operator(session, self.db.keyring, self.db.master, username, role)
        return made.url.split("#token=", 1)[1]

    def operator_enrolled(self, username: str = "olga.ops", role: str = "operator_ops") -> pyotp.TOTP:
        token, client = self.operator_link(username, role), self.browser()
        totp = pyotp.TOTP(client.post(f"{OPERATOR_AUTH}/enrolment", json={"token": token}).json()["secret"])
        body = {"token": token, "password": OPERATOR_PASSWORD, "code": totp.now()}
        assert client.post(f"{OPERATOR_AUTH}/enrolment/complete", json=body).status_code == 200
        with platform_session(self.db) as session:  # the confirming code is spent; the clock stands still here
            session.execute(
                text("UPDATE operator_accounts SET totp_last_step = totp_last_step - 2 WHERE username = :u"),
                {"u": username},
            )
        return totp

    def operator_pending(self, username: str = "olga.ops", role: str = "operator_ops") -> tuple[TestClient, pyotp.TOTP]:
        totp, client = self.operator_enrolled(username, role), self.browser()
        body = {"username": username, "password": OPERATOR_PASSWORD}
        assert client.post(f"{OPERATOR_AUTH}/login", json=body).status_code == 200
        return client, totp

    def operator_signed_in(self, username: str = "olga.ops", role: str = "operator_ops") -> TestClient:
        """A browser with an operator session, second factor passed (what mints operator tokens, breaks glass)."""
        client, totp = self.operator_pending(username, role)
        assert client.post(f"{OPERATOR_AUTH}/mfa", json={"code": totp.now()}).status_code == 200
        return client

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


# -- recipes: one per route --------------------------------------------------------------------

Recipe = Callable[[World], Call]
ROUTE_RECIPES: dict[tuple[str, str], Recipe] = {}


def route(method: str, path: str) -> Callable[[Recipe], Recipe]:
    def register(recipe: Recipe) -> Recipe:
        assert (method, path) not in ROUTE_RECIPES, (method, path)
        ROUTE_RECIPES[(method, path)] = recipe
        return recipe

    return register


# Pages (web/) that read no one's data and decide nothing: a form, a static text, a redirect to a page
# or route that records its own event. GET only (tests/invariants/test_audit_coverage.py checks it);
# every page that reads or changes data has a recipe like an API route.
QUIET_PAGES: dict[str, str] = {}


def quiet_page(path: str, reason: str) -> None:
    assert path not in QUIET_PAGES, path
    QUIET_PAGES[path] = reason


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

    def as_role(self, role: str) -> UUID:
        """From now on the OS user acts as an operator of `role` (operator accounts need the CISO's, the
        escalations the DPO's); the account's id."""
        return map_console(self.monkeypatch, self.db, role)

    @property
    def operator_id(self) -> UUID:
        """The operator account the console acts as now."""
        with platform_session(self.db) as session:
            username = get_settings().console_operators.partition("=")[2]
            return operator_accounts.console_account(session, username).id

    def run(self, *args: str):
        """Run as the mapped operator (tests/e2e/test_cli.py `cli_env`), through a grant when the command works
        on an institution's data (`granted`)."""
        get_settings.cache_clear()
        result = CliRunner().invoke(cli.app, granted(self.db, args), catch_exceptions=False)
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
        rows = self._query(f"SELECT {COLUMNS} FROM {EVENTS} ORDER BY tenant_id, seq")  # noqa: S608
        return [_seen(r) for r in rows if r["seq"] > heads.get(r["tenant_id"], 0)]


CommandRecipe = Callable[[Console], Command]
COMMAND_RECIPES: dict[tuple[str, ...], CommandRecipe] = {}


def command(*path: str) -> Callable[[CommandRecipe], CommandRecipe]:
    def register(recipe: CommandRecipe) -> CommandRecipe:
        assert path not in COMMAND_RECIPES, path
        COMMAND_RECIPES[path] = recipe
        return recipe

    return register
