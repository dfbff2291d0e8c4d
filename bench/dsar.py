"""Data-subject requests at size: one patron's access package and erasure in a tenant of a million rows.

The tenant holds 1,000,000 rows (patrons, loans, searches, posts, reading lists and their items) of
which one patron, the subject, holds 10,000 activity rows (loans, searches, posts, list items), each
with the audit event of its creation, as the service would have recorded it. Then:

- export: `subject_export.build_package` in a tenant session, committed: every location of the
  registry's map read and decrypted, JSON and CSV zipped, sealed in chunks and stored, plus the
  subject's audit events. Run EXPORT_RUNS times; the median is reported.
- erasure: `erasure.erase_patron` in a tenant session, committed: every location's rows deleted,
  the certificate signed and stored, and the subject keys shredded in the keyring. Once (a subject
  is erased only once).
- bare: the same rows read with plain SELECTs on the same engine (no RLS context, no decryption, no
  ZIP), fetched whole: the baseline both ratios are given against. Its median over BARE_RUNS.

Seeding does not go through the service row by row (a million creations would take hours): rows are
sealed in this process with the same AAD the service uses, under one key per patron, COPYed into a
temporary table and moved with INSERT ... SELECT inside the tenant context (the app role's RLS WITH
CHECK vets every row, as in isolation_overhead). Only the subject's key goes to the keyring: no
measured step reads another patron's fields. The subject's rows are sealed under its real keyring key,
so the export decrypts them exactly as in production.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from bench import harness
from bookwarden.audit import record as audit
from bookwarden.audit import signing
from bookwarden.audit.events import Action
from bookwarden.crypto import aead
from bookwarden.crypto.aead import cipher, new_key, seal
from bookwarden.crypto.fields import field_aad
from bookwarden.db.session import TENANT_SETTING, platform_session, tenant_session
from bookwarden.library import records as library
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects import erasure
from bookwarden.privacy.subjects import export as subject_export
from bookwarden.tenancy import service as tenancy

NAME = "dsar"
SEED = 20_261_128
EXPORT_TARGET_S = 2.0
ERASURE_TARGET_S = 1.0
EXPORT_RUNS = 3
BARE_RUNS = 5
WORDS = ("history", "of", "the", "analytical", "engine", "tide", "tables", "herbals", "notes", "on", "sea",
         "poetry", "letters", "atlas", "moths", "bridges", "algebra", "rivers", "castles", "bees")  # fmt: skip


@dataclass(frozen=True)
class Size:
    tenant_rows: int  # every data row of the tenant, the subject's included
    subject_rows: int  # the subject's activity rows (loans, searches, posts, list items)
    chunk: int  # rows sealed and loaded per transaction


FULL = Size(tenant_rows=1_000_000, subject_rows=10_000, chunk=50_000)
QUICK = Size(tenant_rows=20_000, subject_rows=1_000, chunk=10_000)

# How activity is shared among kinds, for the subject and for everyone else.
SHARES = {"loans": 0.4, "searches": 0.3, "posts": 0.15, "reading_list_items": 0.15}
ITEMS_PER_LIST = 50
ACTIVITY_PER_PATRON = 9  # other patrons: one patron row for every nine activity rows

COLUMNS = {
    "patrons": ("tenant_id", "id", "name", "status"),
    "loans": ("tenant_id", "id", "patron_id", "item_id", "item_title", "borrowed_at", "due_at"),
    "searches": ("tenant_id", "id", "patron_id", "query", "searched_at"),
    "posts": ("tenant_id", "id", "patron_id", "board", "body", "created_at"),
    "reading_lists": ("tenant_id", "id", "patron_id", "title", "created_at"),
    "reading_list_items": ("tenant_id", "id", "list_id", "item_id", "note", "added_at"),
}
TYPES = {
    "patrons": ("uuid", "uuid", "bytea", "text"),
    "loans": ("uuid", "uuid", "uuid", "text", "bytea", "timestamptz", "timestamptz"),
    "searches": ("uuid", "uuid", "uuid", "bytea", "timestamptz"),
    "posts": ("uuid", "uuid", "uuid", "text", "bytea", "timestamptz"),
    "reading_lists": ("uuid", "uuid", "uuid", "bytea", "timestamptz"),
    "reading_list_items": ("uuid", "uuid", "uuid", "text", "bytea", "timestamptz"),
}
SEALED = {"patrons": "name", "loans": "item_title", "searches": "query", "posts": "body",
          "reading_lists": "title", "reading_list_items": "note"}  # fmt: skip
ORDER = ("patrons", "reading_lists", "loans", "searches", "posts", "reading_list_items")  # parents first


# -- making rows ---------------------------------------------------------------------------------


class Rows:
    """Sealed rows of one tenant, a table at a time, as the service would have stored them."""

    def __init__(self, tenant_id: UUID, rng: random.Random):
        self.tenant_id, self.rng = tenant_id, rng
        self.start = datetime(2025, 1, 1, tzinfo=UTC)

    def text(self, words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(words)).capitalize()

    def when(self) -> datetime:
        return self.start + timedelta(seconds=self.rng.randrange(365 * 86400))

    def sealed(self, key: Any, table: str, row_id: UUID, value: str) -> bytes:
        return seal(key, value.encode(), field_aad(self.tenant_id, table, SEALED[table], row_id))

    def row(self, table: str, key: Any, patron_id: UUID, parent: UUID | None = None) -> tuple:
        row_id, t = uuid4(), self.tenant_id
        if table == "patrons":
            return (t, patron_id, self.sealed(key, table, patron_id, self.text(2)), "active")
        if table == "loans":
            borrowed = self.when()
            title = self.sealed(key, table, row_id, self.text(5))
            return (t, row_id, patron_id, f"item-{self.rng.randrange(10**6)}", title, borrowed,
                    borrowed + timedelta(days=21))  # fmt: skip
        if table == "searches":
            return (t, row_id, patron_id, self.sealed(key, table, row_id, self.text(3)), self.when())
        if table == "posts":
            return (t, row_id, patron_id, "book-club", self.sealed(key, table, row_id, self.text(25)), self.when())
        if table == "reading_lists":
            return (t, row_id, patron_id, self.sealed(key, table, row_id, self.text(2)), self.when())
        assert parent is not None
        return (t, row_id, parent, f"item-{self.rng.randrange(10**6)}", self.sealed(key, table, row_id,
                self.text(6)), self.when())  # fmt: skip


def split(total: int) -> dict[str, int]:
    counts = {kind: int(total * share) for kind, share in SHARES.items()}
    counts["loans"] += total - sum(counts.values())
    return counts


# -- loading -----------------------------------------------------------------------------------------


class Loader:
    """COPY into a temporary twin of each table, then INSERT ... SELECT in the tenant's context."""

    def __init__(self, env: harness.BenchEnv, tenant_id: UUID):
        self.conn = env.app_connection()
        self.tenant_id = tenant_id
        for table in COLUMNS:
            # COPY FROM into a table with row-level security is refused; a temp table has no policy.
            self.conn.execute(f"CREATE TEMP TABLE {table}_load (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        self.conn.commit()

    def load(self, table: str, rows: Sequence[tuple]) -> None:
        columns = ", ".join(COLUMNS[table])
        with self.conn.transaction():
            self.conn.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, str(self.tenant_id)))
            with self.conn.cursor().copy(f"COPY {table}_load ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(list(TYPES[table]))
                for row in rows:
                    copy.write_row(row)
            self.conn.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_load")

    def close(self) -> None:
        self.conn.close()


def _batches(items: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Seeded:
    tenant_id: UUID
    subject_id: UUID
    rows: dict[str, int]
    subject_rows: dict[str, int]
    seconds: float


def seed(env: harness.BenchEnv, size: Size, rng: random.Random) -> Seeded:
    started = time.perf_counter()
    with platform_session(env.db) as session:
        tenant_id = tenancy.create_tenant(session, env.db.keyring, env.home, "dsar", "DSAR University").id
    # The subject through the service (its key in the keyring, patron.created in the trail).
    with tenant_session(env.db, tenant_id) as session:
        subject_id = library.create(session, library.PATRONS, library.PATRONS.create(name="Ada Subject")).id
    subject_key = cipher(env.db.keyring.subject_key(tenant_id, subject_id))
    make = Rows(tenant_id, rng)
    mine = split(size.subject_rows)
    lists_mine = max(1, mine["reading_list_items"] // ITEMS_PER_LIST)
    others_activity = (size.tenant_rows - size.subject_rows - 1 - lists_mine) * ACTIVITY_PER_PATRON // (
        ACTIVITY_PER_PATRON + 1)
    theirs = split(others_activity)
    lists_theirs = max(1, theirs["reading_list_items"] // ITEMS_PER_LIST)
    patrons = size.tenant_rows - size.subject_rows - 1 - lists_mine - others_activity - lists_theirs
    loader = Loader(env, tenant_id)
    counts = dict.fromkeys(COLUMNS, 0)
    audit_queue: list[tuple[str, UUID]] = []
    try:
        with harness.progress() as bar:
            task = bar.add_task(f"seeding {size.tenant_rows:,} rows", total=size.tenant_rows)
            # Everyone else: patrons, each with a key of its own, then their activity spread among them.
            keys = {}
            ids = []
            for batch in _batches(_others(make, patrons, keys, ids), size.chunk):
                loader.load("patrons", batch)
                counts["patrons"] += len(batch)
                bar.advance(task, len(batch))
            other_lists = []
            for table, n in (("reading_lists", lists_theirs), *((k, v) for k, v in theirs.items())):
                rows = _activity(make, table, n, keys, ids, rng, other_lists)
                for batch in _batches(rows, size.chunk):
                    loader.load(table, batch)
                    counts[table] += len(batch)
                    bar.advance(task, len(batch))
            # The subject: its activity under its real key, each row with its creation event.
            my_lists: list[UUID] = []
            subject = {"reading_lists": lists_mine, **mine}
            for table in ORDER[1:]:
                rows = []
                for _ in range(subject[table]):
                    parent = rng.choice(my_lists) if table == "reading_list_items" else None
                    row = make.row(table, subject_key, subject_id, parent)
                    if table == "reading_lists":
                        my_lists.append(row[1])
                    rows.append(row)
                    audit_queue.append((table, row[1]))
                for batch in _batches(rows, size.chunk):
                    loader.load(table, batch)
                    counts[table] += len(batch)
                    bar.advance(task, len(batch))
    finally:
        loader.close()
    _record_creations(env, tenant_id, subject_id, audit_queue)
    counts["patrons"] += 1
    with env.owner_connection() as conn:
        conn.execute("VACUUM (ANALYZE) patrons, loans, searches, posts, reading_lists, reading_list_items, "
                     "audit_events")  # fmt: skip
    subject_rows = {"reading_lists": lists_mine, **mine, "patrons": 1}
    return Seeded(tenant_id, subject_id, counts, subject_rows, time.perf_counter() - started)


def _others(make: Rows, n: int, keys: dict, ids: list) -> Iterator[tuple]:
    for _ in range(n):
        patron_id = uuid4()
        keys[patron_id] = cipher(new_key())
        ids.append(patron_id)
        yield make.row("patrons", keys[patron_id], patron_id)


def _activity(make: Rows, table: str, n: int, keys: dict, ids: list, rng: random.Random,
              lists: list) -> Iterator[tuple]:  # fmt: skip
    for _ in range(n):
        if table == "reading_list_items":
            list_id, owner = rng.choice(lists)
            yield make.row(table, keys[owner], owner, list_id)
            continue
        owner = rng.choice(ids)
        row = make.row(table, keys[owner], owner)
        if table == "reading_lists":
            lists.append((row[1], owner))
        yield row


def _record_creations(env: harness.BenchEnv, tenant_id: UUID, subject_id: UUID, created: list[tuple[str, UUID]]):
    """The audit events the service records when it creates each of the subject's records."""
    target = {"loans": "loan", "searches": "search", "posts": "post", "reading_lists": "reading_list",
              "reading_list_items": "reading_list_item"}  # fmt: skip
    for start in range(0, len(created), 2000):
        with tenant_session(env.db, tenant_id) as session:
            for table, row_id in created[start : start + 2000]:
                kind = target[table]
                audit.record(session, Action(f"{kind}.created"), (kind, row_id), details={"patron_id": subject_id})


# -- measuring -------------------------------------------------------------------------------------


def bare_select(env: harness.BenchEnv, tenant_id: UUID, subject_id: UUID) -> int:
    """The subject's rows, as plain SELECTs on the same engine: no tenant context, no decryption."""
    params = {"t": tenant_id, "p": subject_id, "ps": str(subject_id)}
    statements = (
        "SELECT * FROM bare_patrons WHERE tenant_id = %(t)s AND id = %(p)s",
        "SELECT * FROM bare_loans WHERE tenant_id = %(t)s AND patron_id = %(p)s",
        "SELECT * FROM bare_searches WHERE tenant_id = %(t)s AND patron_id = %(p)s",
        "SELECT * FROM bare_posts WHERE tenant_id = %(t)s AND patron_id = %(p)s",
        "SELECT * FROM bare_reading_lists WHERE tenant_id = %(t)s AND patron_id = %(p)s",
        "SELECT i.* FROM bare_reading_list_items i JOIN bare_reading_lists l"
        " ON l.tenant_id = i.tenant_id AND l.id = i.list_id WHERE l.tenant_id = %(t)s AND l.patron_id = %(p)s",
        "SELECT * FROM bare_audit_events WHERE tenant_id = %(t)s AND (target_id = %(p)s"
        " OR details->>'patron_id' = %(ps)s)",
    )
    rows = 0
    with env.db.engine.begin() as conn:
        for statement in statements:
            rows += len(conn.exec_driver_sql(statement, params).all())
    return rows


def make_bare_copies(env: harness.BenchEnv, tenant_id: UUID) -> None:
    """bare_*: the same rows with the same indexes, no RLS, readable by the app role (copied by the
    owner within the tenant's context: FORCE RLS binds the owner too)."""
    with env.owner_connection() as conn, conn.transaction():
        conn.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, str(tenant_id)))
        for table in (*COLUMNS, "audit_events"):
            conn.execute(f"CREATE TABLE bare_{table} AS SELECT * FROM {table}")
            conn.execute(f"GRANT SELECT ON bare_{table} TO bookwarden_app")
        conn.execute("CREATE INDEX ON bare_patrons (tenant_id, id)")
        for table in ("loans", "searches", "posts", "reading_lists"):
            conn.execute(f"CREATE INDEX ON bare_{table} (tenant_id, patron_id)")
        conn.execute("CREATE INDEX ON bare_reading_list_items (tenant_id, list_id)")
        conn.execute("CREATE INDEX ON bare_audit_events (tenant_id, target_id)")
        conn.execute("CREATE INDEX ON bare_audit_events (tenant_id, (details->>'patron_id'))")
    with env.owner_connection() as conn:
        conn.execute("VACUUM (ANALYZE) " + ", ".join(f"bare_{t}" for t in (*COLUMNS, "audit_events")))


def timed(fn) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def export_once(env: harness.BenchEnv, tenant_id: UUID, subject_id: UUID) -> subject_export.Package:
    with tenant_session(env.db, tenant_id) as session:
        return subject_export.build_package(session, subject_id)


def erase_once(env: harness.BenchEnv, tenant_id: UUID, subject_id: UUID, key: signing.SigningKey):
    with tenant_session(env.db, tenant_id) as session:
        return erasure.erase_patron(session, subject_id, signing_key=key)


def run(quick: bool) -> Iterator[dict[str, Any]]:
    size = QUICK if quick else FULL
    rng = random.Random(SEED)
    with harness.bench_env() as env:
        yield {"bench": NAME, "event": "setup", "quick": quick, "server": env.server, **env.server_settings(),
               "cpus": os.cpu_count(), "load_average_1m": harness.load_average(), "tenant_rows": size.tenant_rows,
               "subject_rows": size.subject_rows, "seed": SEED,
               "code": harness.code_fingerprint(subject_export, subject_data, erasure, aead)}  # fmt: skip
        seeded = seed(env, size, rng)
        make_bare_copies(env, seeded.tenant_id)
        yield {"bench": NAME, "event": "seeded", "rows": seeded.rows, "tenant_rows": sum(seeded.rows.values()),
               "subject_rows": seeded.subject_rows, "seconds": round(seeded.seconds, 2)}  # fmt: skip
        tenant_id, subject_id = seeded.tenant_id, seeded.subject_id

        bare_select(env, tenant_id, subject_id)  # untimed: warms buffers and the statement cache
        export_once(env, tenant_id, subject_id)  # untimed: warms the keyring cache and code paths
        bare_runs = [timed(lambda: bare_select(env, tenant_id, subject_id)) for _ in range(BARE_RUNS)]
        bare_s, bare_rows = statistics.median(t for t, _ in bare_runs), bare_runs[0][1]
        export_runs = [timed(lambda: export_once(env, tenant_id, subject_id)) for _ in range(EXPORT_RUNS)]
        export_s = statistics.median(t for t, _ in export_runs)
        package = export_runs[-1][1]
        download_s, data = timed(lambda: subject_export.read_package(env.db, package.token))
        yield {"bench": NAME, "event": "export", "seconds_each": [round(t, 3) for t, _ in export_runs],
               "median_seconds": round(export_s, 3), "records": package.record_count, "zip_bytes": len(data),
               "download_seconds": round(download_s, 3), "bare_select_seconds": round(bare_s, 4),
               "bare_rows": bare_rows, "ratio": round(export_s / bare_s, 2), "target_seconds": EXPORT_TARGET_S,
               "load_average_1m": harness.load_average()}  # fmt: skip

        key = signing.SigningKey.from_seed(os.urandom(32))
        erase_s, certificate = timed(lambda: erase_once(env, tenant_id, subject_id, key))
        erased_rows = certificate.statement["rows_erased"]
        left = bare_rows_left(env, tenant_id, subject_id)
        yield {"bench": NAME, "event": "erasure", "seconds": round(erase_s, 3), "rows_erased": erased_rows,
               "subject_keys_destroyed": certificate.statement["subject_keys_destroyed"],
               "rows_left_about_subject": left, "bare_select_seconds": round(bare_s, 4),
               "ratio": round(erase_s / bare_s, 2), "target_seconds": ERASURE_TARGET_S,
               "load_average_1m": harness.load_average()}  # fmt: skip
        yield harness.summary(
            NAME, "export_seconds", export_s, bare_s, "s",
            export_target_s=EXPORT_TARGET_S, export_meets_target=export_s <= EXPORT_TARGET_S,
            erasure_seconds=round(erase_s, 3), erasure_ratio=round(erase_s / bare_s, 2),
            erasure_target_s=ERASURE_TARGET_S, erasure_meets_target=erase_s <= ERASURE_TARGET_S,
            tenant_rows=sum(seeded.rows.values()), subject_rows=size.subject_rows,
            records_exported=package.record_count, rows_erased=erased_rows, load_average_1m=harness.load_average(),
        )  # fmt: skip


def bare_rows_left(env: harness.BenchEnv, tenant_id: UUID, subject_id: UUID) -> int:
    """Rows still about the subject in the live tables after the erasure (0 expected)."""
    with tenant_session(env.db, tenant_id) as session:
        who = subject_data.Subject(tenant_id, subject_id, (), {}, None, frozenset())
        return sum(
            len(subject_data.matching_ids(session, loc, who))
            for loc in subject_data.locations()
            if not loc.is_contact and not loc.names_only
        )
