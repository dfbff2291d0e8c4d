"""What isolation and encryption cost on the hottest path: reading one patron by id.

Secured side, exactly as the app runs it:
    with tenant_session(db, tenant_id) as s: records.read(s, records.PATRONS, patron_id)
i.e. BEGIN, set_config (SET LOCAL tenant), RLS-filtered SELECT by id, subject-key lookup
through the keyring, AES-GCM opening of the 8 personal fields, PatronOut validation, COMMIT.

Bare side: the same rows copied into `bare_patrons` (no RLS, PK (tenant_id, id)), read by primary
key with BEGIN, SELECT, COMMIT on the SAME app engine and pool, no decryption.

Both sides read the same random sequence of patrons in alternating blocks, single-threaded, in one
process, so drift (caches, autovacuum, CPU frequency) hits both alike. Two keyring configurations:
cold (cache_size=0: every read fetches and unwraps the subject key from the keyring database) and
the default warm cache (the app's default LRU size, filled by one untimed pass over the same sample).

The breakdown times the same real reads through hooks (SQLAlchemy cursor events, wrapped keyring,
decrypt_fields, model_validate and the two statements sent whole), so it follows the service as it
changes instead of copying it.

Seeding a million patrons through `records.create` one by one would take hours, so rows are sealed
in bulk with the service's own sealing (`records._seal`: same AAD, same blind indexes) in worker
processes and loaded with COPY. PostgreSQL refuses COPY FROM into a table with row-level security,
so each chunk is COPYed into a temporary table and moved with INSERT ... SELECT inside the tenant
context: the app role's RLS WITH CHECK still vets every row.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Column, MetaData, Table, select

from bench import fake, harness
from bookwarden.audit import record as audit_record
from bookwarden.crypto import aead, fields
from bookwarden.crypto import keyring as keyring_module
from bookwarden.crypto.aead import new_key, seal
from bookwarden.crypto.keyring import Keyring, _subject_aad
from bookwarden.db import session as session_module
from bookwarden.db.session import TENANT_SETTING, Database, platform_session, tenant_session
from bookwarden.library import records, schemas
from bookwarden.library.models import Patron, PatronStatus
from bookwarden.tenancy import service as tenancy

NAME = "isolation_overhead"
TARGET_RATIO = 0.7
SEED = 20_240_611  # fixed: the same patrons and read order on every run (keys stay random)

PATRONS = records.PATRONS
SEALED_COLUMNS = (*PATRONS.personal, *(f"{c}_index" for c in records.INDEXED))
PATRON_COLUMNS = ("tenant_id", "id", *SEALED_COLUMNS, "status")
# Binary COPY sends the enum as its label; the server's enum input accepts text bytes.
PATRON_TYPES = ("uuid", "uuid", *("bytea" for _ in SEALED_COLUMNS), "text")
KEY_COLUMNS = ("tenant_id", "subject_id", "wrapped", "tenant_key_version")
KEY_TYPES = ("uuid", "uuid", "bytea", "int4")

Pair = tuple[UUID, UUID]  # (tenant_id, patron_id)


@dataclass(frozen=True)
class Size:
    tenants: int
    patrons_per_tenant: int
    sample: int  # distinct patrons read in each measured phase
    block: int  # reads per side before switching to the other side
    breakdown: int  # reads in each instrumented breakdown loop
    chunk: int  # rows sealed by one worker task and loaded in one transaction


FULL = Size(tenants=10, patrons_per_tenant=100_000, sample=20_000, block=500, breakdown=3_000, chunk=10_000)
QUICK = Size(tenants=2, patrons_per_tenant=1_000, sample=300, block=50, breakdown=200, chunk=500)


# -- seeding: sealing in worker processes ------------------------------------------------------


@dataclass(frozen=True)
class TenantKeys:
    tenant_id: UUID
    number: int
    domain: str
    data_version: int
    data_key: bytes
    index_key: bytes


@dataclass(frozen=True)
class Chunk:
    tenant: TenantKeys
    index: int  # position of the tenant in the tenant list
    start: int  # first serial (patron number within the tenant)
    count: int
    seed: int


class _IndexOnlyKeyring:
    """All `records._seal` asks of `session.keyring`: the tenant's blind-index key."""

    def __init__(self, key: bytes):
        self._key = key

    def index_key(self, tenant_id: UUID) -> bytes:
        return self._key


def seal_chunk(chunk: Chunk) -> tuple[list[tuple], list[tuple]]:
    """Patron rows and wrapped subject-key rows, sealed as records.create and Keyring.create_subject do."""
    t = chunk.tenant
    rng = random.Random(chunk.seed)
    # records._seal reads only tenant_id and keyring.index_key from the session.
    session = SimpleNamespace(tenant_id=t.tenant_id, keyring=_IndexOnlyKeyring(t.index_key))
    patrons: list[tuple] = []
    keys: list[tuple] = []
    for serial in range(chunk.start, chunk.start + chunk.count):
        row = SimpleNamespace(id=uuid4())
        key = new_key()
        records._seal(session, PATRONS, row, key, fake.patron(rng, t.number, serial, t.domain))
        sealed = (getattr(row, c) for c in SEALED_COLUMNS)
        patrons.append((t.tenant_id, row.id, *sealed, PatronStatus.ACTIVE.value))
        wrapped = seal(t.data_key, key, _subject_aad(t.tenant_id, row.id, t.data_version))
        keys.append((t.tenant_id, row.id, wrapped, t.data_version))
    return patrons, keys


def _bounded_map(
    pool: ProcessPoolExecutor, fn: Callable, items: Sequence, window: int
) -> Iterator[tuple[Any, Any]]:
    """(item, fn(item)) in order, with at most `window` tasks in flight so memory stays bounded."""
    pending: deque[tuple[Any, Future]] = deque()
    todo = iter(items)
    for item in todo:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            break
    while pending:
        item, future = pending.popleft()
        result = future.result()
        nxt = next(todo, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(fn, nxt)))
        yield item, result


# -- seeding: loading ----------------------------------------------------------------------------


class Loader:
    """Loads sealed chunks as the app role: patrons through a temp table under RLS, keys by COPY."""

    def __init__(self, env: harness.BenchEnv):
        self.data = env.app_connection()
        self.keys = env.keyring_app_connection()
        columns = ", ".join(PATRON_COLUMNS)
        self.copy_patrons = f"COPY patrons_load ({columns}) FROM STDIN (FORMAT BINARY)"
        self.move_patrons = f"INSERT INTO patrons ({columns}) SELECT {columns} FROM patrons_load"
        self.copy_keys = f"COPY subject_keys ({', '.join(KEY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        # COPY FROM into an RLS table is refused by PostgreSQL; a temp table has no policy.
        self.data.execute(
            "CREATE TEMP TABLE patrons_load (LIKE patrons INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        self.data.commit()

    def load(self, tenant_id: UUID, patrons: list[tuple], keys: list[tuple]) -> None:
        with self.data.transaction():
            self.data.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, str(tenant_id)))
            _copy(self.data, self.copy_patrons, PATRON_TYPES, patrons)
            self.data.execute(self.move_patrons)
        with self.keys.transaction():
            _copy(self.keys, self.copy_keys, KEY_TYPES, keys)

    def close(self) -> None:
        self.data.close()
        self.keys.close()


def _copy(conn: Any, statement: str, types: Sequence[str], rows: Iterable[tuple]) -> None:
    with conn.cursor().copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


# -- seeding: orchestration ----------------------------------------------------------------------


def create_tenants(env: harness.BenchEnv, count: int) -> list[TenantKeys]:
    """Tenants through the tenancy service (row + keyring keys), then their unwrapped keys."""
    tenants = []
    for number in range(1, count + 1):
        slug = f"bench-{number:02d}"
        with platform_session(env.db) as session:
            name = f"Bench University {number}"
            tenant_id = tenancy.create_tenant(session, env.db.keyring, env.home, slug, name).id
        version, data_key = env.db.keyring.tenant_key(tenant_id)
        tenants.append(TenantKeys(tenant_id, number, f"{slug}.example.edu", version, data_key,
                                  env.db.keyring.index_key(tenant_id)))
    return tenants


def _chunks(tenants: list[TenantKeys], size: Size, rng: random.Random) -> list[Chunk]:
    n = size.patrons_per_tenant
    return [
        Chunk(t, i, start, min(size.chunk, n - start), rng.getrandbits(64))
        for i, t in enumerate(tenants)
        for start in range(0, n, size.chunk)
    ]


def _workers(chunks: int) -> int:
    return max(1, min(os.cpu_count() or 1, chunks, 8))


def seed(
    env: harness.BenchEnv, tenants: list[TenantKeys], size: Size, rng: random.Random
) -> tuple[list[Pair], dict]:
    """Fill patrons and subject keys; return the read sample (random patrons, random order) and stats."""
    n = size.patrons_per_tenant
    total = n * len(tenants)
    positions = rng.sample(range(total), min(size.sample, total))  # random order = read order
    wanted = set(positions)
    found: dict[int, Pair] = {}
    chunks = _chunks(tenants, size, rng)
    workers = _workers(len(chunks))
    started = time.perf_counter()
    loader = Loader(env)
    # spawn, not fork: the progress display runs a thread, and forking a threaded process can deadlock.
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        stack.callback(loader.close)
        pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
        bar = stack.enter_context(harness.progress())
        task = bar.add_task(f"seeding {total:,} patrons ({workers} sealing workers)", total=total)
        for chunk, (patrons, keys) in _bounded_map(pool, seal_chunk, chunks, window=2 * workers):
            loader.load(chunk.tenant.tenant_id, patrons, keys)
            base = chunk.index * n + chunk.start
            for offset, row in enumerate(patrons):
                if base + offset in wanted:
                    found[base + offset] = (row[0], row[1])
            bar.advance(task, len(patrons))
    seconds = time.perf_counter() - started
    stats = {"patrons": total, "seconds": round(seconds, 2), "rows_per_s": round(total / seconds),
             "sealing_workers": workers}
    return [found[p] for p in positions], stats


def make_bare_copy(env: harness.BenchEnv, tenants: list[TenantKeys]) -> None:
    """bare_patrons: the same rows, PK (tenant_id, id), no RLS, readable by the app role.

    Copied server-side by the owner, one tenant context at a time: FORCE RLS binds the owner too.
    """
    with env.owner_connection() as conn:
        conn.execute("CREATE TABLE bare_patrons (LIKE patrons INCLUDING DEFAULTS)")
        for t in tenants:
            with conn.transaction():
                conn.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, str(t.tenant_id)))
                conn.execute("INSERT INTO bare_patrons SELECT * FROM patrons")
        conn.execute("ALTER TABLE bare_patrons ADD CONSTRAINT pk_bare_patrons PRIMARY KEY (tenant_id, id)")
        conn.execute("GRANT SELECT ON bare_patrons TO bookwarden_app")


def vacuum(env: harness.BenchEnv) -> None:
    """Set hint bits and statistics on both sides, so neither pays first-touch costs the other doesn't."""
    with env.owner_connection() as conn:
        conn.execute("VACUUM (ANALYZE) patrons, bare_patrons")
    with env.keyring_owner_connection() as conn:
        conn.execute("VACUUM (ANALYZE) subject_keys, tenant_keys")


# -- the two sides -------------------------------------------------------------------------------


def bare_table() -> Table:
    """bare_patrons with patrons' column types, so result processing costs the same on both sides."""
    return Table(
        "bare_patrons", MetaData(),
        *(Column(c.name, c.type.copy(), primary_key=c.primary_key) for c in Patron.__table__.columns),
    )


def secured_read(db: Database, tenant_id: UUID, patron_id: UUID) -> Any:
    with tenant_session(db, tenant_id) as session:
        return records.read(session, PATRONS, patron_id)


def bare_read(db: Database, table: Table, tenant_id: UUID, patron_id: UUID) -> Any:
    with db.engine.begin() as conn:
        query = select(table).where(table.c.tenant_id == tenant_id, table.c.id == patron_id)
        return conn.execute(query).one()


def with_keyring_cache(db: Database, cache_size: int) -> Database:
    """The same pools (data and keyring), a keyring with its own subject-key cache size."""
    return dataclasses.replace(db, keyring=Keyring(db.keyring.engine, db.master, cache_size))


def verify(db: Database, sample: list[Pair]) -> None:
    """The bulk-sealed rows must behave like service-created ones: they open, and blind indexes match."""
    for tenant_id, patron_id in sample[:5]:
        out = secured_read(db, tenant_id, patron_id)
        opened = [getattr(out, column) for column in PATRONS.personal]
        if any(value is None for value in opened):
            raise RuntimeError(f"patron {patron_id} did not decrypt through records.read")
        if fake.luhn_digit(out.barcode[:-1]) != out.barcode[-1]:
            raise RuntimeError(f"patron {patron_id} decrypted to a wrong barcode")
        with tenant_session(db, tenant_id) as session:
            found = records.lookup_patrons(session, schemas.PatronLookup(by="barcode", value=out.barcode))
        if [p.id for p in found] != [patron_id]:
            raise RuntimeError(f"patron {patron_id} is not found by its barcode's blind index")


# -- measuring -----------------------------------------------------------------------------------


def alternate_blocks(runners: dict[str, Callable[[list[Pair]], None]], sample: list[Pair], block: int) -> None:
    """Every runner gets each block of the sample in turn; which runner goes first alternates."""
    order = list(runners)
    for number, start in enumerate(range(0, len(sample), block)):
        ids = sample[start : start + block]
        for name in (order if number % 2 == 0 else reversed(order)):
            runners[name](ids)


def alternate(sides: dict[str, Callable], sample: list[Pair], block: int) -> dict[str, harness.Timings]:
    """Per-read timings of each side over the sample, read in alternating blocks."""
    timings = {name: harness.Timings() for name in sides}
    alternate_blocks({name: partial(harness.timed, fn, into=timings[name]) for name, fn in sides.items()},
                     sample, block)
    return timings


def phase_line(phase: str, cache_size: int, timings: dict[str, harness.Timings]) -> dict[str, Any]:
    secured, bare = timings["secured"], timings["bare"]
    return {
        "bench": NAME,
        "event": "phase",
        "phase": phase,
        "keyring_cache_size": cache_size,
        "reads_per_side": len(secured.samples),
        "secured_reads_per_s": round(secured.per_second, 1),
        "bare_reads_per_s": round(bare.per_second, 1),
        "ratio": round(secured.per_second / bare.per_second, 4),
        "secured_p50_us": round(secured.percentile_us(50), 1),
        "secured_p99_us": round(secured.percentile_us(99), 1),
        "bare_p50_us": round(bare.percentile_us(50), 1),
        "bare_p99_us": round(bare.percentile_us(99), 1),
        "secured_mean_us": round(secured.mean_us(), 1),
        "secured_cpu_us": round(secured.cpu_mean_us(), 1),
        "bare_mean_us": round(bare.mean_us(), 1),
        "bare_cpu_us": round(bare.cpu_mean_us(), 1),
        "load_average_1m": harness.load_average(),
    }


# -- breakdown -----------------------------------------------------------------------------------

HOOKED = ("keyring_lookup", "decrypt", "pydantic")


def classify(statement: str) -> str:
    """Name a data-database statement by its SQL verb (the BEGIN with set_config is timed apart, below the
    cursor: `begin_with_tenant`)."""
    return f"{statement.split(None, 1)[0].lower()}_statement"


@contextmanager
def hooks(db: Database, split: harness.Split) -> Iterator[None]:
    """Time the keyring lookup, field decryption, pydantic and every SQL statement of real reads."""
    with ExitStack() as stack:
        stack.enter_context(harness.statement_timing(db.engine, split, classify))
        stack.enter_context(harness.patched(db.keyring, "subject_keys",
                                            split.wrap("keyring_lookup", db.keyring.subject_keys)))
        if hasattr(records, "decrypt_fields"):  # a service that stops calling it reports decrypt as null
            # The service calls decrypt_fields (a row's fields at once) through its own module namespace:
            # wrap it there.
            stack.enter_context(harness.patched(records, "decrypt_fields",
                                                split.wrap("decrypt", records.decrypt_fields)))
        stack.enter_context(harness.patched(PATRONS.out, "model_validate",
                                            split.wrap("pydantic", PATRONS.out.model_validate)))
        # The two statements sent whole, below the cursor hooks: the BEGIN with the tenant context, the
        # audit append with the COMMIT.
        stack.enter_context(harness.patched(session_module, "_set_tenant",
                                            split.wrap("begin_with_tenant", session_module._set_tenant)))
        stack.enter_context(harness.patched(audit_record, "run_simple",
                                            split.wrap("append_with_commit", audit_record.run_simple)))
        yield


def instrumented_secured_read(db: Database, split: harness.Split, tenant_id: UUID, patron_id: UUID) -> None:
    """The real secured read (tenant_session + records.read), with its enter and exit timed apart."""
    with split.part("total"), ExitStack() as stack:
        with split.part("enter_tenant_session"):
            session = stack.enter_context(tenant_session(db, tenant_id))
        records.read(session, PATRONS, patron_id)
        with split.part("commit_close"):
            stack.close()


def instrumented_bare_read(db: Database, table: Table, split: harness.Split, tenant_id: UUID,
                           patron_id: UUID) -> None:
    with split.part("total"):
        bare_read(db, table, tenant_id, patron_id)


def _per_read(split: harness.Split, source: dict[str, int], reads: int) -> dict[str, float]:
    return {name: source[name] / reads / 1e3 for name in split.calls}


def secured_parts(split: harness.Split, source: dict[str, int], reads: int) -> dict[str, float | None]:
    """Per-read µs of each part of a secured read; together they sum to the total.

    `begin_with_tenant` is the BEGIN and set_config sent in one round trip, `append_with_commit` the audit
    append and the COMMIT sent in one; `session_and_checkout` and `close` are the rest of entering and
    leaving tenant_session (Session object, pool checkout and return, building the event's row).
    `sqlalchemy_and_glue` is what no hook covers: statement building, SQLAlchemy execution and result
    handling, service code between the steps.
    """
    us = _per_read(split, source, reads)
    statements = {name: us[name] for name in us if name.endswith("_statement")}
    begin, append = us.get("begin_with_tenant", 0.0), us.get("append_with_commit", 0.0)
    parts: dict[str, float | None] = {
        "session_and_checkout": us["enter_tenant_session"] - begin,
        "begin_with_tenant": begin,
        **statements,
        **{name: us.get(name) for name in HOOKED},  # None: the service no longer calls that hook
        "append_with_commit": append,
        "close": us["commit_close"] - append,
    }
    covered = us["enter_tenant_session"] + us["commit_close"] + sum(statements.values())
    covered += sum(us.get(name, 0.0) for name in HOOKED)
    parts["sqlalchemy_and_glue"] = us["total"] - covered
    return {name: None if value is None else round(value, 1) for name, value in parts.items()}


def bare_parts(split: harness.Split, source: dict[str, int], reads: int) -> dict[str, float]:
    us = _per_read(split, source, reads)
    select_us = us.get("select_statement", 0.0)
    return {"select_incl_begin": round(select_us, 1),
            "checkout_sqlalchemy_commit": round(us["total"] - select_us, 1)}


def breakdown(db: Database, table: Table, sample: list[Pair], label: str, block: int) -> dict[str, Any]:
    secured, bare = harness.Split(), harness.Split()

    # Each side's hooks are live only while that side runs, so neither pays for the other's.
    def run_secured(ids: list[Pair]) -> None:
        with hooks(db, secured):
            for tenant_id, patron_id in ids:
                instrumented_secured_read(db, secured, tenant_id, patron_id)

    def run_bare(ids: list[Pair]) -> None:
        with harness.statement_timing(db.engine, bare, classify):
            for tenant_id, patron_id in ids:
                instrumented_bare_read(db, table, bare, tenant_id, patron_id)

    alternate_blocks({"secured": run_secured, "bare": run_bare}, sample, block)
    reads = len(sample)
    secured_total, bare_total = secured.wall_ns["total"] / reads / 1e3, bare.wall_ns["total"] / reads / 1e3
    return {
        "bench": NAME,
        "event": "breakdown",
        "keyring_cache": label,
        "reads": reads,
        "secured_us": secured_parts(secured, secured.wall_ns, reads),
        "secured_cpu_us": secured_parts(secured, secured.cpu_ns, reads),
        "secured_total_us": round(secured_total, 1),
        "secured_total_cpu_us": round(secured.cpu_ns["total"] / reads / 1e3, 1),
        "secured_calls_per_read": {name: round(n / reads, 2) for name, n in secured.calls.items()
                                   if name not in ("total", "enter_tenant_session", "commit_close")},
        "bare_us": bare_parts(bare, bare.wall_ns, reads),
        "bare_cpu_us": bare_parts(bare, bare.cpu_ns, reads),
        "bare_total_us": round(bare_total, 1),
        "bare_total_cpu_us": round(bare.cpu_ns["total"] / reads / 1e3, 1),
        "overhead_us": round(secured_total - bare_total, 1),
        "note": "hooks add a little time per timed call; totals run slightly above the phase means",
    }


# -- the benchmark -------------------------------------------------------------------------------


def run(quick: bool) -> Iterator[dict[str, Any]]:
    size = QUICK if quick else FULL
    rng = random.Random(SEED)
    with harness.bench_env() as env:
        yield setup_line(env, size, quick)
        tenants = create_tenants(env, size.tenants)
        sample, seeding = seed(env, tenants, size, rng)
        started = time.perf_counter()
        make_bare_copy(env, tenants)
        copied = time.perf_counter()
        vacuum(env)
        yield {"bench": NAME, "event": "seeded", **seeding, "bare_copy_seconds": round(copied - started, 2),
               "vacuum_analyze_seconds": round(time.perf_counter() - copied, 2)}
        yield from measure(env, sample, size)


def setup_line(env: harness.BenchEnv, size: Size, quick: bool) -> dict[str, Any]:
    return {
        "bench": NAME, "event": "setup", "quick": quick, "server": env.server, **env.server_settings(),
        "cpus": os.cpu_count(), "load_average_1m": harness.load_average(), "tenants": size.tenants,
        "patrons_per_tenant": size.patrons_per_tenant, "sample_reads": size.sample, "block": size.block,
        "seed": SEED, "threads": 1,
        "code": harness.code_fingerprint(records, session_module, keyring_module, fields, aead),
        "note": "reads single-threaded on one pooled connection; both sides share the app engine and pool",
    }


def measure(env: harness.BenchEnv, sample: list[Pair], size: Size) -> Iterator[dict[str, Any]]:
    table = bare_table()
    warm_db = env.db
    cold_db = with_keyring_cache(env.db, 0)
    verify(warm_db, sample)
    bare = partial(bare_read, env.db, table)

    def sides(db: Database) -> dict[str, Callable]:
        return {"bare": bare, "secured": partial(secured_read, db)}

    with harness.progress() as bar:
        task = bar.add_task("reading (warm-up, cold, fill cache, warm)", total=6 * len(sample))
        # Untimed: warms PostgreSQL buffers for all three tables and SQLAlchemy's statement caches.
        alternate(sides(cold_db), sample, size.block)
        bar.advance(task, 2 * len(sample))
        cold = alternate(sides(cold_db), sample, size.block)
        bar.advance(task, 2 * len(sample))
        for tenant_id, patron_id in sample:  # fills the default LRU with exactly the sampled keys
            secured_read(warm_db, tenant_id, patron_id)
        warm = alternate(sides(warm_db), sample, size.block)
        bar.advance(task, 2 * len(sample))
    cache_size = env.cache_size
    yield phase_line("cold_keyring", 0, cold)
    yield phase_line("warm_keyring", cache_size, warm)
    instrumented = sample[: size.breakdown]
    yield breakdown(warm_db, table, instrumented, "warm", size.block)
    yield breakdown(cold_db, table, instrumented, "cold", size.block)
    yield summary(cold, warm, cache_size, len(sample))


def summary(cold: dict[str, harness.Timings], warm: dict[str, harness.Timings], cache_size: int,
            reads: int) -> dict[str, Any]:
    value, baseline = warm["secured"].per_second, warm["bare"].per_second
    cold_value, cold_baseline = cold["secured"].per_second, cold["bare"].per_second
    return harness.summary(
        NAME, "patron_reads_per_s", value, baseline, "reads/s",
        config=f"default keyring cache ({cache_size:,}), warmed by one pass over the sample",
        reads=reads, threads=1, load_average_1m=harness.load_average(),
        target_ratio=TARGET_RATIO, meets_target=value / baseline >= TARGET_RATIO,
        cold_value=round(cold_value, 3), cold_baseline=round(cold_baseline, 3),
        cold_ratio=round(cold_value / cold_baseline, 4),
    )
