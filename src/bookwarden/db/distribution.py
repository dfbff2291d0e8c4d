"""The plan that spreads Bookwarden's data over a Citus cluster, read from the live catalog.

Every tenant table is keyed, constrained and foreign-keyed on `tenant_id` (the isolation invariant checks it), so
each one can be a distributed table sharded by `tenant_id` and co-located with the others: one institution's rows
sit together on one worker, and every join a request makes stays on that worker. Tables without `tenant_id` (the
institutions themselves, operators, platform settings, the keyring's index) are small and read everywhere: they
become reference tables, copied to every worker.

The plan is generated from `pg_catalog`, never from a hand-kept list, so a table added later is in it (or is
reported as a blocker) without anyone remembering to add it. Blockers are what Citus would refuse: a nullable
`tenant_id`, a primary key, unique constraint or foreign key between tenant tables that leaves `tenant_id` out, or a
reference table pointing into a distributed one.

Statements come in an order Citus accepts: reference tables before the distributed tables that point at them, and
within each kind, a referenced table before the tables that reference it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

DISTRIBUTION_COLUMN = "tenant_id"
_SKIPPED = frozenset({"alembic_version"})  # migration bookkeeping: stays on the coordinator


@dataclass(frozen=True)
class Table:
    name: str
    has_tenant: bool
    tenant_nullable: bool
    unique_keys: tuple[tuple[str, ...], ...]  # primary key and unique constraints, each its columns
    references: tuple[tuple[str, tuple[str, ...]], ...]  # (referenced table, local columns) per foreign key


@dataclass
class Plan:
    reference: list[str] = field(default_factory=list)
    distributed: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str | None:
        """The distributed table the others are co-located with (the first created)."""
        return self.distributed[0] if self.distributed else None

    def statements(self) -> list[str]:
        sql = [f"SELECT create_reference_table('{name}');" for name in self.reference]
        for name in self.distributed:
            colocate = "'none'" if name == self.anchor else f"'{self.anchor}'"
            column = DISTRIBUTION_COLUMN
            sql.append(f"SELECT create_distributed_table('{name}', '{column}', colocate_with => {colocate});")
        return sql

    def script(self) -> str:
        lines = [
            "-- Citus distribution plan, generated from the catalog (bookwarden db distribution-plan).",
            f"-- {len(self.reference)} reference tables (copied to every worker),",
            f"-- {len(self.distributed)} tables distributed by {DISTRIBUTION_COLUMN}, co-located with {self.anchor}.",
        ]
        lines += [f"-- BLOCKER: {blocker}" for blocker in self.blockers]
        lines += ["BEGIN;", *self.statements(), "COMMIT;"]
        return "\n".join(lines) + "\n"


def read_tables(conn: psycopg.Connection) -> dict[str, Table]:
    """Every ordinary or partitioned table of the public schema, with what the plan needs of it."""
    names = [
        row[0]
        for row in conn.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               ORDER BY c.relname"""
        )
        if row[0] not in _SKIPPED
    ]
    tables = {}
    for name in names:
        tenant = conn.execute(
            """SELECT NOT attnotnull FROM pg_attribute
               WHERE attrelid = %s::regclass AND attname = %s AND NOT attisdropped""",
            (name, DISTRIBUTION_COLUMN),
        ).fetchone()
        keys, references = [], []
        for kind, referenced, columns in conn.execute(
            """SELECT con.contype, con.confrelid::regclass::text,
                      array(SELECT att.attname::text FROM unnest(con.conkey) k
                            JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = k)
               FROM pg_constraint con
               WHERE con.conrelid = %s::regclass AND con.contype IN ('p', 'u', 'f')
               ORDER BY con.conname""",
            (name,),
        ):
            if kind == "f":
                references.append((referenced, tuple(columns)))
            else:
                keys.append(tuple(columns))
        tables[name] = Table(
            name=name,
            has_tenant=tenant is not None,
            tenant_nullable=bool(tenant and tenant[0]),
            unique_keys=tuple(keys),
            references=tuple(references),
        )
    return tables


def plan(tables: dict[str, Table]) -> Plan:
    result = Plan()
    distributed = {name for name, table in tables.items() if table.has_tenant}
    for name, table in sorted(tables.items()):
        if not table.has_tenant:
            for referenced, _ in table.references:
                if referenced in distributed:
                    result.blockers.append(f"{name}: a reference table cannot point at distributed {referenced}")
            continue
        if table.tenant_nullable:
            result.blockers.append(f"{name}: {DISTRIBUTION_COLUMN} may be NULL (Citus needs a value in every row)")
        for key in table.unique_keys:
            if DISTRIBUTION_COLUMN not in key:
                result.blockers.append(f"{name}: unique key ({', '.join(key)}) lacks {DISTRIBUTION_COLUMN}")
        for referenced, columns in table.references:
            if referenced in distributed and DISTRIBUTION_COLUMN not in columns:
                result.blockers.append(f"{name}: foreign key ({', '.join(columns)}) to {referenced} lacks tenant_id")
    result.reference = _parents_first(sorted(set(tables) - distributed), tables)
    result.distributed = _parents_first(sorted(distributed), tables)
    return result


def _parents_first(names: list[str], tables: dict[str, Table]) -> list[str]:
    """`names` ordered so a table comes after every table among them it references (self-references ignored)."""
    members, ordered, placed = set(names), [], set()

    def place(name: str, path: frozenset[str]) -> None:
        if name in placed:
            return
        for referenced, _ in tables[name].references:
            if referenced in members and referenced != name and referenced not in path:
                place(referenced, path | {name})
        placed.add(name)
        ordered.append(name)

    for name in names:
        place(name, frozenset())
    return ordered
