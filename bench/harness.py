"""What every benchmark shares: a throwaway database, stderr progress, timing and the summary line.

Each benchmark runs against its own database so numbers never depend on what else lives on the
server: by default a fresh embedded PostgreSQL in a temporary folder (the same approach as
tests/conftest.py), or the server whose administrative URL is in BOOKWARDEN_BENCH_DATABASE_URL.
The master key is random per run, so nothing a benchmark writes can be read after it ends.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from bookwarden import areas
from bookwarden.core.config import Settings
from bookwarden.crypto.aead import new_key
from bookwarden.crypto.master import MasterKeys, key_id
from bookwarden.db import provision
from bookwarden.db.migrate import migrate
from bookwarden.db.server import embedded_admin_url, stop_embedded
from bookwarden.db.session import Database

DATABASE_URL_ENV = "BOOKWARDEN_BENCH_DATABASE_URL"
BENCH_DATABASE = "bookwarden_bench"
SUMMARY_KEYS = ("bench", "metric", "value", "baseline", "ratio", "unit")
# The app's own defaults (what `db.session.connect` uses when nothing is configured).
DEFAULT_POOL_SIZE: int = Settings.model_fields["pool_size"].default
DEFAULT_CACHE_SIZE: int = Settings.model_fields["subject_key_cache_size"].default

# Progress and notes go to stderr: stdout carries JSON lines only.
stderr = Console(stderr=True)


@dataclass
class BenchEnv:
    """A provisioned, migrated database and the app-role pools opened on it."""

    db: Database
    urls: provision.DatabaseUrls
    master: MasterKeys
    home: Path  # tenant file areas (create_tenant makes one per tenant)
    server: str  # "embedded" or "external"
    cache_size: int  # the keyring's subject-key cache size in `db`
    admin: URL | None = None  # the server's administrative role (backups read past row-level security)

    def owner_connection(self) -> psycopg.Connection:
        return psycopg.connect(provision.libpq(self.urls.owner), autocommit=True)

    def keyring_owner_connection(self) -> psycopg.Connection:
        return psycopg.connect(provision.libpq(self.urls.keyring_owner), autocommit=True)

    def app_connection(self) -> psycopg.Connection:
        return psycopg.connect(provision.libpq(self.urls.app))

    def keyring_app_connection(self) -> psycopg.Connection:
        return psycopg.connect(provision.libpq(self.urls.keyring_app))

    def server_settings(self) -> dict[str, str]:
        """Server facts that change what read numbers mean."""
        with self.owner_connection() as conn:
            return {name: str(conn.execute(f"SHOW {name}").fetchone()[0])
                    for name in ("server_version", "shared_buffers")}


def random_master() -> MasterKeys:
    key = new_key()
    return MasterKeys(current_id=key_id(key), keys={key_id(key): key})


@contextmanager
def _admin_server(scratch: Path) -> Iterator[tuple[URL, str]]:
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        yield make_url(configured).set(drivername="postgresql+psycopg"), "external"
        return
    pgdata = scratch / "pg"
    try:
        yield embedded_admin_url(pgdata), "embedded"
    finally:
        stop_embedded(pgdata)


@contextmanager
def bench_env(pool_size: int = DEFAULT_POOL_SIZE, cache_size: int = DEFAULT_CACHE_SIZE) -> Iterator[BenchEnv]:
    """Provision `bookwarden_bench` (and its keyring database), migrate, open; drop everything after."""
    areas.load()  # as every entry point: every area's tables, approval kinds and jobs
    scratch = Path(tempfile.mkdtemp(prefix="bookwarden-bench-"))
    try:
        with _admin_server(scratch) as (admin, server):
            # A previous run killed midway may have left the database behind: start clean.
            provision.drop(admin, BENCH_DATABASE)
            master = random_master()
            urls = provision.provision(admin, BENCH_DATABASE, master.current)
            try:
                migrate(urls)
                db = Database.open(urls, master, pool_size=pool_size, cache_size=cache_size)
                try:
                    yield BenchEnv(db=db, urls=urls, master=master, home=scratch / "home", server=server,
                                   cache_size=cache_size, admin=admin)
                finally:
                    db.dispose()
            finally:
                provision.drop(admin, BENCH_DATABASE)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def progress() -> Progress:
    """A progress display on stderr, for long phases (seeding)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    )


@dataclass
class Timings:
    """One measured side: each operation's wall time, and this process's CPU time over all of them.

    CPU time tells where a slowdown lives: when it is most of the wall time, the cost is Python in
    this process (ORM, driver, crypto), not the server or the round trips.
    """

    samples: list[int] = field(default_factory=list)  # wall ns per operation
    cpu_ns: int = 0

    @property
    def seconds(self) -> float:
        return sum(self.samples) / 1e9

    @property
    def per_second(self) -> float:
        return len(self.samples) / self.seconds if self.samples else 0.0

    def percentile_us(self, p: float) -> float:
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))
        return ordered[index] / 1e3

    def mean_us(self) -> float:
        return sum(self.samples) / len(self.samples) / 1e3

    def cpu_mean_us(self) -> float:
        return self.cpu_ns / len(self.samples) / 1e3


def timed(fn: Callable[..., Any], args: Sequence[tuple], into: Timings) -> None:
    """Call fn(*a) for each a, recording each call's wall time and the loop's CPU time in `into`."""
    clock = time.perf_counter_ns
    cpu_start = time.process_time_ns()
    for a in args:
        start = clock()
        fn(*a)
        into.samples.append(clock() - start)
    into.cpu_ns += time.process_time_ns() - cpu_start


class Split:
    """Wall and CPU time of named parts of many operations, timed by hooks around the real code.

    Hooks (wrapped functions, SQLAlchemy cursor events) leave the measured code unchanged, so a
    breakdown keeps describing what the app does even as the code under it changes.
    """

    def __init__(self) -> None:
        self.wall_ns: dict[str, int] = defaultdict(int)
        self.cpu_ns: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, name: str, wall_ns: int, cpu_ns: int) -> None:
        self.wall_ns[name] += wall_ns
        self.cpu_ns[name] += cpu_ns
        self.calls[name] += 1

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        try:
            yield
        finally:
            self.add(name, time.perf_counter_ns() - wall, time.process_time_ns() - cpu)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self.part(name):
                return fn(*args, **kwargs)

        return timed_call


@contextmanager
def patched(target: Any, name: str, replacement: Any) -> Iterator[None]:
    """Temporarily replace an attribute (module function, class or instance attribute)."""
    own = vars(target).get(name, _MISSING)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        if own is _MISSING:
            delattr(target, name)  # back to the inherited / class-level attribute
        else:
            setattr(target, name, own)


_MISSING = object()


@contextmanager
def statement_timing(engine: Engine, split: Split, classify: Callable[[str], str]) -> Iterator[None]:
    """Time every DBAPI cursor execute on `engine` (driver + round trip) into split[classify(sql)]."""

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench.started"] = (time.perf_counter_ns(), time.process_time_ns())

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        wall, cpu = conn.info.pop("bench.started")
        split.add(classify(statement), time.perf_counter_ns() - wall, time.process_time_ns() - cpu)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def code_fingerprint(*modules: ModuleType) -> dict[str, str]:
    """Short hashes of the measured modules' source: which code a result belongs to, without git."""
    return {
        module.__name__: hashlib.sha256(Path(module.__file__ or "").read_bytes()).hexdigest()[:12]
        for module in modules
    }


def load_average() -> float:
    """1-minute load average: on a shared machine, other work skews timings, so every run records it."""
    return round(os.getloadavg()[0], 2)


def summary(
    bench: str, metric: str, value: float, baseline: float, unit: str, **extra: Any
) -> dict[str, Any]:
    """The last line of every benchmark: value against its baseline."""
    return {
        "bench": bench,
        "metric": metric,
        "value": round(value, 3),
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 4) if baseline else 0.0,
        "unit": unit,
        **extra,
    }
