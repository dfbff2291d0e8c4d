"""Backup and restore of a ~1 GB data database (`--quick`: ~50 MB) against plain `pg_dump -Fc` and `pg_restore`.

The data database is filled with a table shaped like what the platform stores: per row a tenant id, an id,
a short text and 96 bytes of ciphertext-like random bytes (personal fields are AES-GCM ciphertext, which does
not compress), about 250 bytes a row on disk. Then, side by side on the same database and server:

- baseline backup: `pg_dump -Fc -f FILE` (the server's own pg_dump, default compression);
- ours: `backup.service.take_backup(PLATFORM)`: the same pg_dump streamed through 4 MiB AES-256-GCM chunks,
  per-chunk and whole-member SHA-256, per-table row counts and checksums, the file areas and configuration,
  the signed manifest;
- baseline restore: `pg_restore -d NEW FILE` into a new database;
- ours: `restore_into` of that backup into a new database (manifest verified, every chunk checked and
  decrypted) and the table checks against the manifest (`table_mismatches`), as `bookwarden backup restore` does.

The summary gives megabytes of database per second of backup + restore, ours against the baseline; the ratio is
the baseline's time over ours: the target is >= 0.7, ours taking at most ~1.43x as long. With `--quick` each
pair runs twice, alternately, and medians are reported; the full size runs once.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from bench import harness
from bookwarden.backup import service, snapshot, stream
from bookwarden.backup.models import BackupKind
from bookwarden.core.config import Settings
from bookwarden.db.server import pg_bin

NAME = "backup"
TARGET = 0.7
FULL_BYTES = 1024**3
QUICK_BYTES = 50 * 1024**2
ROW_BYTES = 250  # on disk, with the tuple header
RUNS = 2
FULL_RUNS = 1  # a gigabyte each way takes minutes on a shared machine


def run(quick: bool) -> Iterator[dict[str, Any]]:
    size = QUICK_BYTES if quick else FULL_BYTES
    with harness.bench_env() as env:
        database = env.urls.owner.database
        yield {"bench": NAME, "event": "setup", "quick": quick, "server": env.server, **env.server_settings(),
               "cpus": os.cpu_count(), "load_average_1m": harness.load_average(),
               "code": harness.code_fingerprint(service, snapshot, stream)}  # fmt: skip
        started = time.perf_counter()
        on_disk = _fill(env, size // ROW_BYTES)
        yield {
            "bench": NAME,
            "event": "seeded",
            "database_bytes": on_disk,
            "seconds": round(time.perf_counter() - started, 1),
        }
        settings = Settings(home=env.home, backup_dir=env.home / "backups", master_key=None, audit_signing_key=None,
                            database_url=None, audit_retired_keys=None)  # fmt: skip
        env.home.mkdir(parents=True, exist_ok=True)
        scratch = env.home / "plain"
        scratch.mkdir()
        plain_backup, plain_restore, our_backup, our_restore = [], [], [], []
        runs = RUNS if quick else FULL_RUNS
        for attempt in range(runs):
            dump = scratch / f"plain-{attempt}.dump"
            plain_backup.append(_timed(_pg_dump, env, database, dump))
            plain_restore.append(_timed(_pg_restore, env, dump, f"bench_plain_{attempt}"))
            made: list = []
            our_backup.append(_timed(_our_backup, env, settings, made))
            our_restore.append(_timed(_our_restore, env, settings, made[0], database, f"bench_ours_{attempt}"))
            yield {"bench": NAME, "event": "run", "run": attempt + 1,
                   "pg_dump_s": round(plain_backup[-1], 2), "ours_backup_s": round(our_backup[-1], 2),
                   "pg_restore_s": round(plain_restore[-1], 2), "ours_restore_s": round(our_restore[-1], 2),
                   "pg_dump_bytes": dump.stat().st_size, "ours_bytes": made[0].stored_bytes,
                   "load_average_1m": harness.load_average()}  # fmt: skip
            dump.unlink()
        pb, pr, ob, orr = (statistics.median(x) for x in (plain_backup, plain_restore, our_backup, our_restore))
        mb = on_disk / 1e6
        yield harness.summary(
            # Megabytes of database backed up and restored per second, ours against plain pg_dump + pg_restore:
            # the ratio is the baseline's time over ours (1.0: as fast; the target 0.7: at most ~1.43x as long).
            NAME, "backup_restore_mb_per_s", mb / (ob + orr), mb / (pb + pr), "MB/s",
            config=f"data database of {on_disk:,} bytes; median of {runs}",
            pg_dump_s=round(pb, 2), ours_backup_s=round(ob, 2), backup_ratio=round(pb / ob, 4),
            pg_restore_s=round(pr, 2), ours_restore_s=round(orr, 2), restore_ratio=round(pr / orr, 4),
            target=TARGET, meets_target=(pb + pr) / (ob + orr) >= TARGET, load_average_1m=harness.load_average(),
        )  # fmt: skip


def _pg_dump(env: harness.BenchEnv, database: str, dump: Path) -> None:
    _run([pg_bin("pg_dump"), "-Fc", "-f", str(dump), snapshot.url_of(env.admin, database)])


def _pg_restore(env: harness.BenchEnv, dump: Path, target: str) -> None:
    snapshot.create_database(env.admin, target, owner=None)
    try:
        url = snapshot.url_of(env.admin, target)
        _run([pg_bin("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "-d", url, str(dump)])
    finally:
        snapshot.drop_database(env.admin, target)


def _our_backup(env: harness.BenchEnv, settings: Settings, made: list) -> None:
    made.append(service.take_backup(env.db, settings, env.admin, BackupKind.PLATFORM))


def _our_restore(env: harness.BenchEnv, settings: Settings, backup, database: str, target: str) -> None:
    try:
        opened = service.OpenedBackup(backup, settings, env.db.master)
        service.restore_into(opened, env.admin, target, live_database=database, keep_owners=False)
        problems = service.table_mismatches(opened, env.admin, target)
        if problems:
            raise RuntimeError(f"restored database differs from the manifest: {problems}")
    finally:
        snapshot.drop_database(env.admin, target)


def _fill(env: harness.BenchEnv, rows: int) -> int:
    """`rows` rows of a ciphertext-like table, generated by the server itself; the database's size after."""
    with psycopg.connect(snapshot.url_of(env.admin, env.urls.owner.database), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_sealed (tenant_id uuid NOT NULL, id bigint NOT NULL, label text NOT NULL, "
            "sealed bytea NOT NULL, PRIMARY KEY (tenant_id, id))"
        )
        tenants = [conn.execute("SELECT gen_random_uuid()").fetchone()[0] for _ in range(4)]
        batch = 200_000
        with harness.progress() as bar:
            task = bar.add_task("seeding", total=rows)
            for start in range(0, rows, batch):
                n = min(batch, rows - start)
                conn.execute(
                    "INSERT INTO bench_sealed SELECT (%(t)s::uuid[])[1 + i %% 4], i, 'loan ' || i || ' note', "
                    "decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || "
                    "md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex') "
                    "FROM generate_series(%(a)s::bigint, %(b)s::bigint) AS i",
                    {"t": tenants, "a": start, "b": start + n - 1},
                )
                bar.advance(task, n)
        conn.execute("VACUUM ANALYZE bench_sealed")
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def _run(args: list[str]) -> None:
    # The server's own client programs, with arguments built here (no shell).
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)  # noqa: S603


def _timed(fn, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


__all__ = ["run"]
