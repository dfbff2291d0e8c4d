"""Tenant isolation, attacked from every side: ids of another tenant, a missing context,
pooled connections, user input aimed at the tenant setting, and the schema itself.

Every test that takes `db` runs twice: inside a transaction rolled back at the end (sessions in
savepoints), and on really committed transactions, the path production takes (SET LOCAL ended by
COMMIT, the audit append sent with the commit), with both institutions holding rows, so a tenant
setting that outlived its commit would show as the other tenant's rows.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.library import records
from tests.helpers import CHANGES, PATHS, populate

KINDS = list(PATHS)
SRC = Path(__file__).resolve().parents[2] / "src" / "bookwarden"


@pytest.fixture(params=["rolled back", "committed"])
def db(request, db):
    if request.param == "committed":
        return request.getfixturevalue("committed_db")
    return db


@pytest.fixture
def two_tenants(tenant, other_tenant, client_for):
    mine, theirs = client_for(tenant), client_for(other_tenant)
    return mine, populate(mine, 1), theirs, populate(theirs, 2)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.table)
def test_another_tenants_record_is_not_found_for_every_verb(two_tenants, kind):
    mine, _, theirs, their_records = two_tenants
    target = their_records[kind]
    url = f"/api/v1/{PATHS[kind]}/{target['id']}"

    for response in (mine.get(url), mine.patch(url, json=CHANGES[kind]), mine.delete(url)):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    # Exactly the answer a never-existing id gets: nothing distinguishes "theirs" from "nobody's".
    unknown = mine.get(f"/api/v1/{PATHS[kind]}/{uuid.uuid4()}").json()
    assert mine.get(url).json()["title"] == unknown["title"]

    assert theirs.get(url).json() == target  # unchanged, undeleted


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.table)
def test_listing_shows_only_own_records(two_tenants, kind):
    mine, my_records, _, their_records = two_tenants
    listed = {item["id"] for item in mine.get(f"/api/v1/{PATHS[kind]}").json()["items"]}
    assert listed == {my_records[kind]["id"]}
    assert their_records[kind]["id"] not in listed


@pytest.mark.parametrize("kind", [k for k in KINDS if k.parent], ids=lambda k: k.table)
def test_records_cannot_point_at_another_tenants_parent(two_tenants, kind):
    mine, _, _, their_records = two_tenants
    column, parent_model = kind.parent
    parent_kind = next(k for k in KINDS if k.model is parent_model)
    body = {
        records.LOANS: {"item_id": "x", "borrowed_at": "2026-01-01T00:00:00Z", "due_at": "2026-01-02T00:00:00Z"},
        records.SEARCHES: {"query": "q"},
        records.READING_LISTS: {"title": "t"},
        records.READING_LIST_ITEMS: {"item_id": "x"},
        records.POSTS: {"board": "b", "body": "hello"},
    }[kind]
    body[column] = their_records[parent_kind]["id"]
    response = mine.post(f"/api/v1/{PATHS[kind]}", json=body)
    assert response.status_code == 404


def test_filters_cannot_reach_another_tenant(two_tenants):
    mine, _, _, theirs = two_tenants
    response = mine.get("/api/v1/loans", params={"patron_id": theirs[records.PATRONS]["id"]})
    assert response.json()["items"] == []
    lookup = mine.post("/api/v1/patrons/lookup", json={"by": "email", "value": "patron2@example.org"})
    assert lookup.json() == []


def test_no_context_sees_zero_rows_of_every_tenant_table(db, two_tenants, owner_conn):
    tables = _tenant_tables(owner_conn)
    assert len(tables) >= 7
    with platform_session(db) as session:
        for table in tables:
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table  # noqa: S608


def test_a_context_sees_its_own_rows_only(db, tenant, other_tenant, two_tenants, owner_conn):
    with tenant_session(db, tenant.id) as session:
        for table in _tenant_tables(owner_conn):
            foreign = session.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id <> :me"),  # noqa: S608
                {"me": tenant.id},
            ).scalar_one()
            assert foreign == 0, table


def test_writes_into_another_tenant_are_refused_by_the_database(db, tenant, other_tenant):
    with pytest.raises(Exception, match="row-level security"), tenant_session(db, tenant.id) as session:
        session.execute(
            text("INSERT INTO searches (tenant_id, id, patron_id, query) VALUES (:t, :i, :i, 'x')"),
            {"t": other_tenant.id, "i": uuid.uuid4()},
        )


def test_a_pooled_connection_reused_for_a_second_tenant_sees_none_of_the_first(committed_db, home):
    from bookwarden.tenancy import service as tenancy

    one_connection = create_engine(committed_db.urls.app, pool_size=1, max_overflow=0)
    db = Database(
        engine=one_connection, keyring=committed_db.keyring, urls=committed_db.urls, master=committed_db.master
    )
    with platform_session(db) as session:
        first = tenancy.create_tenant(session, db.keyring, home, "first", "First")
        second = tenancy.create_tenant(session, db.keyring, home, "second", "Second")
    from bookwarden.library.schemas import PatronCreate

    with tenant_session(db, first.id) as session:
        first_pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        records.create(session, records.PATRONS, PatronCreate(name="Only First"))
    with tenant_session(db, second.id) as session:
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_pid  # same connection
        assert session.execute(text("SELECT count(*) FROM patrons")).scalar_one() == 0
    with platform_session(db) as session:
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_pid
        assert session.execute(text("SELECT current_setting('bookwarden.tenant_id', true)")).scalar_one() == ""
        assert session.execute(text("SELECT count(*) FROM patrons")).scalar_one() == 0
    one_connection.dispose()


def test_the_tenant_context_takes_only_uuids(db):
    for forged in ("00000000-0000-0000-0000-000000000000'; SET bookwarden.tenant_id='x", "", None, 42):
        with pytest.raises(TypeError), tenant_session(db, forged):
            pass


def test_the_tenant_setting_is_made_in_exactly_one_place():
    writers = []
    for path in SRC.rglob("*.py"):
        source = path.read_text()
        # Any set_config but two other settings made inside audit definer functions: the segment-drop
        # switch and synchronous_commit for reads.
        writes = re.search(
            r"set_config\s*\((?!'bookwarden\.audit_segment_drop'|'synchronous_commit')|SET\s+(LOCAL\s+|SESSION\s+)?bookwarden\.tenant_id",
            source,
            re.I,
        )
        if writes and "TENANT_SETTING" not in source:
            writers.append(str(path.relative_to(SRC)))
        if "TENANT_SETTING" in source and path.name != "session.py":
            writers.append(str(path.relative_to(SRC)))
    assert writers == []


def test_request_input_cannot_choose_the_tenant(two_tenants, tenant, other_tenant):
    mine, my_records, _, _ = two_tenants
    headers = {"X-Tenant-ID": str(other_tenant.id), "X-Bookwarden-Tenant": str(other_tenant.id)}
    listed = mine.get("/api/v1/patrons", params={"tenant_id": str(other_tenant.id)}, headers=headers).json()
    assert [p["id"] for p in listed["items"]] == [my_records[records.PATRONS]["id"]]
    smuggled = mine.post("/api/v1/patrons", json={"name": "Mallory", "tenant_id": str(other_tenant.id)})
    assert smuggled.status_code == 422  # unknown fields are refused, never silently used


def test_app_role_cannot_bypass_rls_and_owns_nothing(owner_conn):
    row = owner_conn.execute(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'bookwarden_app'"
    ).fetchone()
    assert row == (False, False, False, False)
    owned = owner_conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = 'bookwarden_app'"
    ).fetchone()[0]
    assert owned == 0


def test_every_tenant_table_is_protected_and_ready_for_distribution(owner_conn):
    """RLS enabled and forced, a policy, and a primary key and foreign keys that include tenant_id."""
    tables = _tenant_tables(owner_conn)
    for table in tables:
        enabled, forced = owner_conn.execute(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass", (table,)
        ).fetchone()
        assert enabled and forced, f"{table}: row-level security must be enabled and forced"
        policies = owner_conn.execute(
            "SELECT qual, with_check FROM pg_policies WHERE tablename = %s AND 'public' = ANY(roles)", (table,)
        ).fetchall()
        assert policies, f"{table}: no policy for the app"
        for qual, check in policies:
            assert "bookwarden_current_tenant()" in qual and "bookwarden_current_tenant()" in check, table
        for kind, columns in owner_conn.execute(
            """SELECT con.contype, array_agg(att.attname::text)
               FROM pg_constraint con JOIN pg_attribute att
                 ON att.attrelid = con.conrelid AND att.attnum = ANY(con.conkey)
               WHERE con.conrelid = %s::regclass AND con.contype IN ('p', 'f', 'u')
               GROUP BY con.oid, con.contype""",
            (table,),
        ):
            assert "tenant_id" in columns, f"{table}: constraint {kind} on {columns} lacks tenant_id"


def _tenant_tables(conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            """SELECT c.table_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'
           ORDER BY 1"""
        )
    ]
