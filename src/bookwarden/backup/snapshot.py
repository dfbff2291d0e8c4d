"""What a backup reads from PostgreSQL, and what a drill or a restore writes back: dumps, COPY, checksums.

Everything here runs as the administrative role of the server (the embedded server's superuser, or
the URL an operator configured): a backup must read every institution's rows, past row-level
security, as pg_dump does. Nothing here records, authorizes or commits Bookwarden state.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from uuid import UUID

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from bookwarden.db.provision import OWNER_ROLE, libpq
from bookwarden.db.server import pg_bin

PIPE_BYTES = 1024 * 1024
END_OF_TABLE = b"\\.\n"  # COPY's own end marker: a data line never equals it (backslashes are escaped)


class DumpFailed(Exception):
    """pg_dump, pg_restore or psql ended with an error (its last lines of stderr are in the message)."""


def url_of(admin: URL, database: str) -> str:
    return libpq(admin.set(database=database))


@contextmanager
def snapshot(admin: URL, database: str) -> Iterator[tuple[psycopg.Connection, str]]:
    """A REPEATABLE READ transaction on `database` and its exported snapshot id (for pg_dump --snapshot)."""
    with psycopg.connect(url_of(admin, database)) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield conn, snapshot_id
        # Read only: the connection's own end (a COMMIT of nothing) closes the snapshot.


def dump(
    admin: URL,
    database: str,
    sink: Callable[[bytes], object],
    *,
    snapshot_id: str | None = None,
    schema_only: bool = False,
) -> None:
    """pg_dump -Fc of `database` by the server's own pg_dump, streamed into `sink`."""
    args = [pg_bin("pg_dump"), "-Fc"]
    if snapshot_id:
        args += ["--snapshot", snapshot_id]
    if schema_only:
        args.append("--schema-only")
    # The server's own client programs, with arguments built here (no shell): S603 has nothing to find.
    command = [*args, url_of(admin, database)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # noqa: S603
        try:
            while block := proc.stdout.read(PIPE_BYTES):
                sink(block)
        except BaseException:
            proc.kill()
            raise
        error = proc.stderr.read()
    if proc.returncode != 0:
        raise DumpFailed(f"pg_dump of {database} failed ({proc.returncode}): {_tail(error)}")


def restore(admin: URL, database: str, blocks: Iterable[bytes], *, keep_owners: bool) -> None:
    """pg_restore a custom-format dump, fed block by block, into the existing `database`."""
    args = [pg_bin("pg_restore"), "--exit-on-error", "-d", url_of(admin, database)]
    if not keep_owners:
        args[1:1] = ["--no-owner", "--no-privileges"]
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:  # noqa: S603
        try:
            for block in blocks:
                proc.stdin.write(block)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # pg_restore stopped on an error: its exit code and stderr say which
        except BaseException:
            proc.kill()
            raise
        error = proc.stderr.read()
    if proc.returncode != 0:
        raise DumpFailed(f"pg_restore into {database} failed ({proc.returncode}): {_tail(error)}")


def create_database(admin: URL, database: str, *, owner: str | None = OWNER_ROLE) -> None:
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            raise FileExistsError(database)
        statement = sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(database))
        if owner:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        conn.execute(statement)


def database_exists(admin: URL, database: str) -> bool:
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None


def rename_database(admin: URL, database: str, to: str) -> None:
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(database), sql.Identifier(to)))


def drop_database(admin: URL, database: str) -> None:
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def tables(conn: psycopg.Connection, *, tenant_scoped: bool = False) -> list[str]:
    """The base tables of schema public, by name; with `tenant_scoped`, those with a tenant_id column."""
    query = (
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
    )
    if tenant_scoped:
        query += (
            " AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'"
            " AND NOT a.attisdropped)"
        )
    return [row[0] for row in conn.execute(query + " ORDER BY c.relname")]


def _order(conn: psycopg.Connection, table: str) -> sql.Composable:
    """ORDER BY the primary key (the same on the source and on a restored copy); else the whole row."""
    columns = [
        row[0]
        for row in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (sql.Identifier(table).as_string(conn),),
        )
    ]
    if not columns:
        return sql.SQL("ORDER BY {}::text").format(sql.Identifier(table))
    return sql.SQL("ORDER BY ") + sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _where(table: str, tenant_id: UUID | None) -> sql.Composable:
    if tenant_id is None:
        return sql.SQL("")
    column = "id" if table == "tenants" else "tenant_id"
    return sql.SQL("WHERE {} = {}").format(sql.Identifier(column), sql.Literal(str(tenant_id)))


def copy_rows(conn: psycopg.Connection, table: str, tenant_id: UUID | None = None) -> Iterator[bytes]:
    """A table's rows as COPY text, in primary-key order (of one tenant with `tenant_id`)."""
    query = sql.SQL("COPY (SELECT * FROM {} {} {}) TO STDOUT").format(
        sql.Identifier(table), _where(table, tenant_id), _order(conn, table)
    )
    with conn.cursor().copy(query) as copy:
        for block in copy:
            yield bytes(block)


def table_checksums(
    conn: psycopg.Connection, names: Iterable[str], tenant_id: UUID | None = None
) -> dict[str, dict[str, object]]:
    """{table: {"rows", "sha256"}} of the rows COPY writes, in primary-key order."""
    found: dict[str, dict[str, object]] = {}
    for table in names:
        digest, rows = hashlib.sha256(), 0
        for block in copy_rows(conn, table, tenant_id):
            digest.update(block)
            rows += block.count(b"\n")
        found[table] = {"rows": rows, "sha256": digest.hexdigest()}
    return found


def write_tenant_rows(
    conn: psycopg.Connection, tenant_id: UUID, sink: Callable[[bytes], object]
) -> dict[str, dict[str, object]]:
    """Every tenant-scoped table's rows of `tenant_id` (and its tenants row), sectioned; returns checksums.

    A section is `T <table>\\n`, the COPY text of its rows, then COPY's end marker `\\.\\n`.
    """
    found: dict[str, dict[str, object]] = {}
    for table in ["tenants", *tables(conn, tenant_scoped=True)]:
        sink(f"T {table}\n".encode())
        digest, rows = hashlib.sha256(), 0
        for block in copy_rows(conn, table, tenant_id):
            sink(block)
            digest.update(block)
            rows += block.count(b"\n")
        sink(END_OF_TABLE)
        found[table] = {"rows": rows, "sha256": digest.hexdigest()}
    return found


def load_tenant_rows(conn: psycopg.Connection, blocks: Iterable[bytes]) -> None:
    """Copy the sections `write_tenant_rows` wrote into the tables of `conn`'s database (schema present).

    In replica mode, as a restore is: the audit tables' triggers refuse every write but their append
    function's, and foreign keys are checked by the source's own consistency, not row by row.
    """
    conn.execute("SET session_replication_role = replica")
    lines = _lines(blocks)
    for header in lines:
        if not header.startswith(b"T ") or not header.endswith(b"\n"):
            raise DumpFailed(f"tenant rows: expected a table header, found {header[:40]!r}")
        table = header[2:-1].decode()
        with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as copy:
            for line in lines:
                if line == END_OF_TABLE:
                    break
                copy.write(line)
            else:
                raise DumpFailed(f"tenant rows: table {table} has no end marker")
    # Committed when the caller's `with psycopg.connect(...)` ends without an error; rolled back otherwise.


def _lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for block in blocks:
        pending += block
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line + b"\n"
    if pending:
        yield pending


def _tail(error: bytes) -> str:
    return " | ".join(error.decode(errors="replace").strip().splitlines()[-3:]) or "no message"
