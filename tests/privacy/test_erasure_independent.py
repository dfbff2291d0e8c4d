"""Erasure checked against the database's own catalog, not against the map the erasure walks.

tests/privacy/test_erasure.py counts rows with the functions the erasure itself uses
(privacy/subjects/data.py): a table the map forgets is forgotten by both. Here the tables that can
point at a patron are found from PostgreSQL's catalog, as the schema owner: every foreign key that
leads to patrons or accounts (directly or through another such table), and every column named
patron_id, account_id or subject_id that has no foreign key. A patron and their portal account are
given a row in every one of them through the real services and routes (signed in, passwords
changed, preferences set and withdrawn, a cookie choice, an objection, a restriction, a security key
and a pending authenticator app, a complaint, a disclosure, a lifted legal hold, a request, an
access package, a report of unauthorised access, a receipt of the privacy notice); so is a second
patron. After the erasure none of the first patron's rows is left, except where the certificate says it
keeps them; every uuid column of every table is searched for their ids too; the second patron keeps
everything. The audit events about the patron are kept, but not the source addresses and user agents
kept apart from them (counted with SQL of this test's own).

The rows are really committed (`committed_db`): the catalog is read over another connection.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import text

from bookwarden.api.app import create_app
from bookwarden.audit import signing
from bookwarden.core.classification import Category
from bookwarden.core.config import Settings
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.models import AccountKind
from bookwarden.identity.tokens import service as tokens
from bookwarden.incidents import affected as breach
from bookwarden.incidents import service as incidents
from bookwarden.library import records as library
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.consent import objections
from bookwarden.privacy.disclosures import service as disclosures
from bookwarden.privacy.disclosures.models import DisclosureKind, LegalBasis
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.notices.models import Collection
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.restrictions import service as restrictions
from bookwarden.privacy.retention import holds
from bookwarden.privacy.subjects import erasure
from bookwarden.privacy.subjects import export as subject_export
from tests.helpers import acting, fresh_address, populate
from tests.identity.test_mfa import SoftwareAuthenticator
from tests.identity.test_mfa_enrolment import ORIGIN
from tests.privacy.test_complaints import PASSWORD, _account

ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
OFFICER = BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
NAMED = ("patron_id", "account_id", "subject_id")  # columns that name a person by their id
MFA = "/api/v1/auth/me/mfa"

# Tables the catalog links to a patron that cannot hold a row about them before their erasure.
CANNOT_HOLD_BEFORE = {
    "erasure_certificates": "its rows are made by an erasure: the certificate is the erasure's proof",
    "dpo_escalations": "subject_id names the complaint or request escalated (subject_kind), never a patron or account",
    "incident_staff": "staff accounts a breach affected: an account linked to a patron is traced to the patron "
    "(incident_subjects), so no row here names a patron's account",
}
INCIDENT_HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)
# Tables the fill leaves without a row about the patron, and why.
NOT_FILLED = {
    "privacy_request_challenges": "one-time codes of the unauthenticated request form, which a patron's request "
    "reaches only after a mailed code is typed in; it holds no personal column (code_hash is a keyed hash of a "
    "random code) and goes or stays with its request",
}
# Tables the catalog links to a patron through a column that names another kind of person.
NOT_PATRONS = {
    "operator_sessions": "account_id is an operator account (foreign key to operator_accounts), not a patron's",
}


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def key() -> signing.SigningKey:
    return signing.SigningKey.from_seed(os.urandom(32))


# -- the catalog -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    table: str
    columns: tuple[str, ...]  # of `table`
    target: str  # patrons, accounts, another linked table; "" for a named column without a foreign key
    target_columns: tuple[str, ...]


def _catalog_links(conn) -> dict[str, list[Link]]:
    """Every table that can point at a patron or an account, with how, read from pg_constraint and
    information_schema only."""
    foreign_keys = conn.execute(
        """
        SELECT c.conrelid::regclass::text, c.confrelid::regclass::text,
               array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
               array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
          FROM pg_constraint c
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
        """
    ).fetchall()
    in_a_key = {(table, column) for table, _, columns, _ in foreign_keys for column in columns}
    links: dict[str, list[Link]] = {"patrons": [], "accounts": []}
    named = conn.execute(
        "SELECT table_name::text, column_name::text FROM information_schema.columns "
        "WHERE table_schema = 'public' AND column_name = ANY(%s)",
        (list(NAMED),),
    ).fetchall()
    for table, column in named:
        if (table, column) not in in_a_key and table not in NOT_PATRONS:
            links.setdefault(table, []).append(Link(table, (column,), "", ()))
    # Then every table whose foreign keys lead to one of those (accounts.patron_id to patrons, reading
    # list items to reading lists, request challenges to requests...), followed backwards.
    frontier = list(links)
    while frontier:
        target = frontier.pop()
        for table, referred, columns, target_columns in foreign_keys:
            if referred != target or table == target or table in NOT_PATRONS:
                continue
            if table not in links:
                links[table] = []
                frontier.append(table)
            links[table].append(Link(table, tuple(columns), target, tuple(target_columns)))
    return links


def _condition(links: dict[str, list[Link]], table: str, seen: tuple[str, ...] = ()) -> tuple[sql.Composable, list]:
    """SQL naming the rows of `table` about the person whose patron id is %(patron)s and whose account
    ids are %(accounts)s: by their own id, by a named column, or through the foreign keys."""
    if table == "patrons":
        return sql.SQL("id = %s"), ["patron"]
    if table == "accounts":
        return sql.SQL("(id = ANY(%s) OR patron_id = %s)"), ["accounts", "patron"]
    parts, params = [], []
    for link in links[table]:
        if not link.target:
            parts.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(link.columns[0])))
            params.append("ids")
            continue
        if link.target in seen:
            continue
        inner, inner_params = _condition(links, link.target, (*seen, table))
        parts.append(
            sql.SQL("({}) IN (SELECT {} FROM {} WHERE {})").format(
                sql.SQL(", ").join(map(sql.Identifier, link.columns)),
                sql.SQL(", ").join(map(sql.Identifier, link.target_columns)),
                sql.Identifier(link.target),
                inner,
            )
        )
        params += inner_params
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts)), params


@dataclass(frozen=True)
class Person:
    patron_id: UUID
    account_ids: tuple[UUID, ...]

    def values(self, names: list[str]) -> list:
        ids = [self.patron_id, *self.account_ids]
        return [{"patron": self.patron_id, "accounts": list(self.account_ids), "ids": ids}[n] for n in names]


def _primary_key(conn, table: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum",
            (table,),
        )
    ]


def _rows_about(conn, links, person: Person) -> dict[str, set[tuple]]:
    """Primary keys of the rows about `person`, table by table (text, so they compare across queries)."""
    found = {}
    for table in sorted(links):
        where, names = _condition(links, table)
        key = _primary_key(conn, table)
        assert key, f"{table} has no primary key: its rows cannot be followed across the erasure"
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in key), sql.Identifier(table), where
        )
        found[table] = {tuple(r) for r in conn.execute(query, person.values(names))}
    return found


def _still_there(conn, table: str, keys: set[tuple]) -> int:
    if not keys:
        return 0
    columns = _primary_key(conn, table)
    query = sql.SQL("SELECT count(*) FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in columns),
    )
    return conn.execute(query, [list(column) for column in zip(*keys, strict=True)]).fetchone()[0]


def _mentions(conn, ids: list[UUID]) -> dict[str, int]:
    """Rows of any table whose uuid columns (or JSON documents) hold one of `ids`."""
    columns = conn.execute(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns "
        "JOIN information_schema.tables USING (table_schema, table_name) "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' "
        "AND data_type IN ('uuid', 'jsonb', 'json', 'ARRAY')"
    ).fetchall()
    texts = [str(i) for i in ids]
    found = {}
    for table, column, kind in columns:
        if kind == "uuid":
            query = sql.SQL("SELECT count(*) FROM {} WHERE {} = ANY(%s)")
            params = [ids]
        else:
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}::text LIKE ANY(%s)")
            params = [[f"%{t}%" for t in texts]]
        count = conn.execute(query.format(sql.Identifier(table), sql.Identifier(column)), params).fetchone()[0]
        if count:
            found[f"{table}.{column}"] = count
    return found


def _addresses_kept(conn, person: Person) -> int:
    """Source addresses and user agents kept for the audit events the person did (their accounts acted) or
    was the subject of (the patron, an account, or details naming the patron), counted in SQL of its own."""
    ids = [person.patron_id, *person.account_ids]
    return conn.execute(
        "SELECT count(*) FROM audit_event_contexts c JOIN audit_events e USING (tenant_id, seq) "
        "WHERE e.actor_id = ANY(%s) OR e.target_id = ANY(%s) OR e.details->>'patron_id' = %s",
        (ids, ids, str(person.patron_id)),
    ).fetchone()[0]


# -- filling every table -----------------------------------------------------------------------------


def _principal(tenant_id: UUID, permissions) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset(permissions))


def _browser(app) -> TestClient:
    client = TestClient(app, base_url="https://testserver", client=(fresh_address(), 50000),
                        raise_server_exceptions=False)  # fmt: skip
    client.headers["X-Requested-With"] = "fetch"
    return client


def _ok(response, status: int = 200):
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _fill(db, app, master_keys, tenant, staff: TestClient, n: int) -> Person:
    """A patron with a row in every table about patrons and their accounts, made as people make them."""
    tenant_id, slug = tenant
    patron_id = UUID(populate(staff, n)[library.PATRONS]["id"])  # loans, searches, reading lists and items, posts
    admin, officer = _principal(tenant_id, ADMIN), _principal(tenant_id, OFFICER | ADMIN)
    notice_officer = _principal(tenant_id, {Permission.PRIVACY_NOTICE_MANAGE})
    final = f"{PASSWORD} {n} third"
    with tenant_session(db, tenant_id) as session:
        account = _account(session, f"reader{n}", kind=AccountKind.PATRON, roles=[BuiltinRole.PATRON],
                           email=f"patron{n}@example.org", patron_id=patron_id)  # fmt: skip
        account_id = account.id
        # Two changes: the two earlier hashes go to the password history.
        accounts.change_password(session, account, f"{PASSWORD} {n} second")
        accounts.change_password(session, account, final)
        enrolment_links.send_link(session, master_keys, admin, account_id)  # the link row, and mail
        complaints.register_for_patron(session, officer, patron_id, subject="Shown to others", body="On the screen.")
        disclosures.disclose(session, recipient="Metro Analytics Ltd", purpose="usage_analysis",
                             basis=LegalBasis.LEGITIMATE_INTERESTS, categories=[Category.CIRCULATION_HISTORY],
                             patron_ids=[patron_id], kind=DisclosureKind.USAGE_ANALYSIS, actor=officer)  # fmt: skip
        objections.record_objection(session, patron_id, "purpose:research_sharing", actor=officer)
        hold = holds.place(session, officer, reason=f"case 2026-{n}", patron_id=patron_id)
        holds.lift(session, officer, hold.id)  # lifted: kept as a record, no longer stops the erasure
        request = requests.register_for_patron(session, officer, patron_id, RequestKind.ACCESS)
        # The privacy notice in force when data was collected (a receipt, as the request form leaves one).
        if notices.in_force(session) is None:
            notices.publish(session, notice_officer, version="2026-01", notice_text="Our notice.", material=False)
        notices.record_receipt(session, notices.in_force(session), Collection.REQUEST_FORM, patron_id, request.id)
        subject_export.build_package(session, patron_id)
    portal = _browser(app)
    login = {"institution": slug, "username": f"reader{n}", "password": final}
    assert _ok(portal.post("/api/v1/auth/login", json=login))["mfa_required"] is False  # a session
    choose = {
        "notice_version": "2026-01",
        "choices": [{"channel": "email", "topic": "newsletters", "subscribed": True}],
    }
    _ok(portal.put("/api/v1/privacy/me/preferences", json=choose))
    choose["choices"][0]["subscribed"] = False  # withdrawn: the consent record keeps both
    _ok(portal.put("/api/v1/privacy/me/preferences", json=choose))
    cookie = {"analytics": True, "preferences": False, "notice_version": "2026-01"}
    _ok(portal.put("/api/v1/privacy/me/cookie-choice", json=cookie))
    concern = {"kind": "unauthorised_access", "description": "A sign-in I did not make."}
    _ok(portal.post("/api/v1/privacy/me/concerns", json=concern), 201)  # a report, from the patron's account
    # A personal-data breach of the institution's records: the patron is among its subjects, a notice prepared.
    with platform_session(db) as session:
        incident = incidents.open_incident(session, INCIDENT_HANDLER, title=f"Breach {n}", summary="Records read.")
    breach.mark_breach(
        db,
        INCIDENT_HANDLER,
        incident.id,
        since=datetime.now(UTC) - timedelta(hours=1),
        targets=[breach.BreachTarget("tenant", str(tenant_id))],
        data=[Category.IDENTITY],
        measures="The token was revoked.",
        contact="incidents@bookwarden.example",
    )
    _ok(portal.post(f"{MFA}/totp"), 201)  # an authenticator app's enrolment begun, not confirmed: a pending secret
    with tenant_session(db, tenant_id) as session:  # a personal API token of the portal account
        personal = [Permission.SELF_SERVICE]
        tokens.issue_api_token(session, "reading app", personal, timedelta(days=30), owner_id=account_id)
    # Security keys are for staff accounts only: the patron also works at the library, and their staff
    # account (linked to their patron record, as the portal account is) registers one, then begins a
    # second key's ceremony and does not finish it (a pending challenge).
    with tenant_session(db, tenant_id) as session:
        staff_account = _account(session, f"staff{n}", email=f"staff{n}@example.org", patron_id=patron_id)
        staff_account_id = staff_account.id
    desk = _browser(app)
    login = {"institution": slug, "username": f"staff{n}", "password": PASSWORD}
    assert _ok(desk.post("/api/v1/auth/login", json=login))["mfa_required"] is False
    options = _ok(desk.post(f"{MFA}/webauthn/options"))["options"]
    credential = SoftwareAuthenticator().create(json.dumps(options), origin=ORIGIN)
    _ok(desk.post(f"{MFA}/webauthn/credentials", json={"credential": credential, "name": "Blue key"}), 201)
    _ok(desk.post(f"{MFA}/webauthn/options"))
    with tenant_session(db, tenant_id) as session:
        restrictions.restrict(session, officer, patron_id, None)  # last: a restricted record refuses changes
    return Person(patron_id, (account_id, staff_account_id))


@pytest.fixture
def institution(committed_db, committed_tenant, home, master_keys):
    """A committed institution, the app over it, and a staff client of that institution."""
    tenant_id = committed_tenant()
    app = create_app(committed_db, Settings(home=home))
    with tenant_session(committed_db, tenant_id) as session:
        slug = session.execute(text("SELECT slug FROM tenants WHERE id = :t"), {"t": tenant_id}).scalar_one()
        secret = tokens.issue_api_token(session, "staff", sorted(ADMIN | OFFICER), timedelta(hours=1))[1]
    staff = TestClient(app, raise_server_exceptions=False)
    staff.headers["Authorization"] = f"Bearer {secret}"
    return (tenant_id, slug), app, staff


@pytest.fixture
def as_owner(owner_conn) -> Iterator:
    """The owner's connection, scoped to `as_owner.tenant(id)` (row-level security is forced on the owner too)."""

    class Scoped:
        conn = owner_conn

        @staticmethod
        def tenant(tenant_id: UUID):
            owner_conn.execute("SELECT set_config('bookwarden.tenant_id', %s, false)", (str(tenant_id),))
            return owner_conn

    yield Scoped


# -- the test ------------------------------------------------------------------------------------------


def test_every_table_that_can_point_at_the_patron_is_filled_and_then_emptied(
    committed_db, institution, master_keys, as_owner, key
):
    tenant, app, staff = institution
    tenant_id = tenant[0]
    person = _fill(committed_db, app, master_keys, tenant, staff, 1)
    other = _fill(committed_db, app, master_keys, tenant, staff, 2)
    conn = as_owner.tenant(tenant_id)
    links = _catalog_links(conn)

    before = _rows_about(conn, links, person)
    other_before = _rows_about(conn, links, other)
    empty = sorted(t for t, rows in before.items() if not rows and t not in CANNOT_HOLD_BEFORE | NOT_FILLED)
    assert not empty, f"the fill left these tables without a row about the patron: {empty}"
    assert not any(before[t] for t in CANNOT_HOLD_BEFORE if t in before)
    # The audit trail is kept, but not where its events about the patron came from (audit_event_contexts:
    # no foreign key leads there from a patron, so the catalog walk above cannot find it).
    addresses_before, other_addresses = _addresses_kept(conn, person), _addresses_kept(conn, other)
    assert addresses_before and other_addresses

    with tenant_session(committed_db, tenant_id) as session:
        certificate = erasure.erase_patron(session, person.patron_id, signing_key=key)

    statement = certificate.statement
    kept = {e["table"] for e in statement["locations"] if e["action"] in ("retained", "unlinked", "anonymized")}
    kept |= {r["what"] for r in statement["retained"]}
    # A row whose every link is to a kept row is kept with it (its foreign key would refuse otherwise).
    kept |= {t for t, ls in links.items() if ls and all(link.target in kept for link in ls)}
    left = {t: n for t in sorted(before) if t not in kept and (n := _still_there(conn, t, before[t]))}
    assert not left, f"rows about the erased patron left behind, undeclared by the certificate: {left}"
    after_again = _rows_about(conn, links, person)
    assert not {t: r for t, r in after_again.items() if r and t not in kept and t != "erasure_certificates"}
    # Nothing else in the database still names the patron or their account, but what the certificate keeps
    # and the certificate itself.
    mentions = _mentions(conn, [person.patron_id, *person.account_ids])
    undeclared = {c: n for c, n in mentions.items() if c.split(".")[0] not in kept | {"erasure_certificates"}}
    assert not undeclared, f"ids of the erased patron still named here: {undeclared}"
    assert _rows_about(conn, links, other) == other_before  # the other patron keeps every row
    assert _addresses_kept(conn, person) == 0
    assert _addresses_kept(conn, other) == other_addresses
    (contexts,) = [e for e in statement["locations"] if e["table"] == "audit_event_contexts"]
    assert (contexts["action"], contexts["rows"]) == ("deleted", addresses_before)
