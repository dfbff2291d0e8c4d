"""`bookwarden db distribution-plan`: the Citus plan is read from the catalog and refuses what Citus would refuse."""

from __future__ import annotations

import psycopg
import pytest

from bookwarden.db import distribution, provision
from tests.e2e.test_cli import _run, cli_env  # noqa: F401 - fixture


@pytest.fixture
def scratch_owner(database_urls):
    """An owner connection whose DDL is rolled back at the end: tables planted for one test only."""
    with psycopg.connect(provision.libpq(database_urls.owner)) as conn:
        yield conn
        conn.rollback()


def _public_tables(conn) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    }


def test_every_table_is_placed_once_and_the_schema_distributes_without_blockers(scratch_owner):
    tables = distribution.read_tables(scratch_owner)
    plan = distribution.plan(tables)

    assert plan.blockers == []
    assert set(plan.reference) | set(plan.distributed) == _public_tables(scratch_owner)
    assert not set(plan.reference) & set(plan.distributed)
    tenant_tables = {
        row[0]
        for row in scratch_owner.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name = 'tenant_id'"
        )
    }
    assert set(plan.distributed) == tenant_tables
    assert {"patrons", "loans", "posts"} <= set(plan.distributed)
    assert "tenants" in plan.reference


def test_statements_come_parents_first_and_all_colocated(scratch_owner):
    tables = distribution.read_tables(scratch_owner)
    plan = distribution.plan(tables)
    statements = plan.statements()
    position = {name: i for i, name in enumerate(plan.reference + plan.distributed)}
    for name, table in tables.items():
        for referenced, _ in table.references:
            if referenced != name:
                assert position[referenced] < position[name], f"{name} is created before {referenced}"
    anchor = plan.anchor
    assert statements[len(plan.reference)] == (
        f"SELECT create_distributed_table('{anchor}', 'tenant_id', colocate_with => 'none');"
    )
    assert all(f"colocate_with => '{anchor}'" in s for s in statements[len(plan.reference) + 1 :])
    assert len(statements) == len(tables)


@pytest.mark.parametrize(
    ("ddl", "blocker"),
    [
        (
            "CREATE TABLE planted (id uuid PRIMARY KEY, tenant_id uuid REFERENCES tenants (id))",
            "planted: tenant_id may be NULL (Citus needs a value in every row)",
        ),
        (
            "CREATE TABLE planted (id uuid, tenant_id uuid NOT NULL, code text UNIQUE, PRIMARY KEY (tenant_id, id))",
            "planted: unique key (code) lacks tenant_id",
        ),
        (
            "CREATE TABLE planted (id uuid, tenant_id uuid NOT NULL, patron_id uuid, PRIMARY KEY (tenant_id, id),"
            " FOREIGN KEY (patron_id) REFERENCES planted_parent (id))",
            "planted: foreign key (patron_id) to planted_parent lacks tenant_id",
        ),
        (
            "CREATE TABLE planted (id uuid PRIMARY KEY, parent uuid REFERENCES planted_parent (id))",
            "planted: a reference table cannot point at distributed planted_parent",
        ),
    ],
    ids=["nullable-tenant", "unique-without-tenant", "foreign-key-without-tenant", "reference-into-distributed"],
)
def test_a_table_citus_would_refuse_is_named_as_a_blocker(scratch_owner, ddl, blocker):
    scratch_owner.execute(
        "CREATE TABLE planted_parent (id uuid UNIQUE, tenant_id uuid NOT NULL, PRIMARY KEY (tenant_id, id))"
    )
    scratch_owner.execute(ddl)
    plan = distribution.plan(distribution.read_tables(scratch_owner))
    assert blocker in plan.blockers
    assert "-- BLOCKER: " + blocker in plan.script()


def test_the_command_prints_the_plan_of_the_live_database(cli_env):  # noqa: F811 - the fixture
    script = _run("db", "distribution-plan")
    assert script.startswith("-- Citus distribution plan")
    assert "SELECT create_reference_table('tenants');" in script
    assert "SELECT create_distributed_table('patrons', 'tenant_id'" in script
    assert "BLOCKER" not in script
    assert script.rstrip().endswith("COMMIT;")
