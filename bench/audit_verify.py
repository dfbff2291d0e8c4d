"""Audit verification throughput: events verified per second, from the database and from a bundle.

One tenant chain of 200,000 events (quick: 5,000) is recorded through the real path (`audit.record`
queued on tenant sessions and linked into the chain right after each commit, 1,000 events per
transaction) and sealed by `checkpoints.make_checkpoint` every 1,000 events. The events vary as the
trail does: a dozen actions, a pool of actors and addresses, details that repeat (refusals, field
lists) and details that do not (ids); 1 % carry a non-ASCII user agent, which takes the reference
encoding path.

Measured, each three times, single-threaded:
- DB verify: `verify.verify_chain` (server-side cursor, digests and links recomputed, checkpoint
  signatures and roots checked), the chain's full check;
- bundle verify: `bundle.verify_bundle` on the exported .tar.gz (decompression in a child process,
  lines parsed, OCSF views compared and event digests hashed by worker processes, the same chain
  check in this one);
- baseline: fetching the same rows through the same cursor, with no verification at all.
The summary value is the median DB verify rate (wall clock); baseline the median bare fetch rate; target
100,000/s. Rates per CPU-second of this process are reported too (not counting the database server,
nor the child process that decompresses a bundle): on a shared machine they say what the verifier
costs, where the wall-clock rates also say how busy the machine was.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness
from bookwarden.audit import bundle, checkpoints, merkle, signing, verify
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.tenancy import service as tenancy

NAME = "audit_verify"
FULL, QUICK = 200_000, 5_000
PER_TRANSACTION = 1_000
TARGET = 100_000
RUNS = 3
SEED = 20_261_128

ACTIONS = [Action.PATRON_VIEWED, Action.PATRON_LISTED, Action.PATRON_CHANGED, Action.LOAN_CREATED, Action.LOAN_VIEWED,
           Action.SEARCH_CREATED, Action.POST_VIEWED, Action.READING_LIST_CHANGED, Action.SIGN_IN_SUCCEEDED,
           Action.ACCESS_DENIED, Action.REQUEST_FAILED, Action.ACCOUNT_VIEWED]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15",
          "bookwarden-sync/2.1 (+https://library.example)", "curl/8.9.1"]


def _details(rng: random.Random, action: Action) -> dict[str, Any]:
    if action in (Action.ACCESS_DENIED, Action.REQUEST_FAILED):
        return {"method": "GET", "route": "/api/v1/patrons/{patron_id}", "problem": "forbidden",
                "permission": "patrons.read"}
    roll = rng.random()
    if roll < 0.3:
        return {}
    if roll < 0.7:
        return {"fields": rng.sample(["name", "email", "barcode", "address", "phone", "notes"], 2)}
    return {"ids": [str(uuid.UUID(int=rng.getrandbits(128)))], "count": rng.randrange(1, 500)}


def seed(env: harness.BenchEnv, size: int, key: signing.SigningKey) -> tuple[uuid.UUID, float]:
    rng = random.Random(SEED)
    with platform_session(env.db) as session:
        tenant_id = tenancy.create_tenant(session, env.db.keyring, env.home, "bench", "Bench University").id
    actors = [Principal(PrincipalKind.API_TOKEN, uuid.UUID(int=rng.getrandbits(128)), tenant_id, frozenset())
              for _ in range(50)]
    started = time.perf_counter()
    with harness.progress() as bar:
        task = bar.add_task("recording events", total=size)
        written = 0
        while written < size:
            batch = min(PER_TRANSACTION, size - written)
            with tenant_session(env.db, tenant_id) as session:
                for _ in range(batch):
                    action = rng.choice(ACTIONS)
                    agent = "Bücherei-Client/1.0 (Zürich)" if rng.random() < 0.01 else rng.choice(AGENTS)
                    context = audit.Context(rng.choice(actors), f"198.51.100.{rng.randrange(1, 255)}", agent,
                                            f"req-{rng.getrandbits(64):016x}")
                    with audit.acting(context):
                        audit.record(session, action, ("patron", uuid.UUID(int=rng.getrandbits(128))),
                                     outcome=Outcome.DENIED if action is Action.ACCESS_DENIED else Outcome.SUCCEEDED,
                                     details=_details(rng, action))
            written += batch
            with tenant_session(env.db, tenant_id) as session:
                checkpoints.make_checkpoint(session, key)
            written += 1  # the checkpoint's own event
            bar.update(task, completed=min(written, size))
    return tenant_id, time.perf_counter() - started


def bare_fetch(env: harness.BenchEnv, tenant_id: uuid.UUID) -> tuple[int, float]:
    """The same rows through the same server-side cursor and prefetching, verifying nothing."""
    started = time.perf_counter()
    count = 0
    with tenant_session(env.db, tenant_id) as session:
        raw = session.connection().connection.driver_connection
        with raw.cursor(name="bench_bare_fetch", binary=True) as cursor:
            cursor.itersize = verify.BATCH
            cursor.execute(f"SELECT {verify.EVENT_COLUMNS} FROM audit_events WHERE tenant_id = %s ORDER BY seq",
                           (tenant_id,))
            for rows in verify.prefetched(cursor):
                count += len(rows)
    return count, time.perf_counter() - started


def run(quick: bool) -> Iterator[dict[str, Any]]:
    size = QUICK if quick else FULL
    key = signing.SigningKey.from_seed(os.urandom(32))
    keys = signing.TrustedKeys(key.public)
    with harness.bench_env() as env:
        yield {"bench": NAME, "event": "setup", "quick": quick, "server": env.server, **env.server_settings(),
               "cpus": os.cpu_count(), "load_average_1m": harness.load_average(), "events": size,
               "per_transaction": PER_TRANSACTION, "seed": SEED, "threads": 1,
               "code": harness.code_fingerprint(verify, bundle, merkle, signing)}
        tenant_id, seconds = seed(env, size, key)
        with env.owner_connection() as conn:
            conn.execute("VACUUM ANALYZE audit_events")
        yield {"bench": NAME, "event": "seeded", "events": size, "seconds": round(seconds, 1),
               "events_per_s": round(size / seconds)}

        db_rates, fetch_rates, bundle_rates, db_cpu, bundle_cpu, bundle_all_cpu = [], [], [], [], [], []
        with tempfile.TemporaryDirectory(prefix="bookwarden-bench-bundle-") as scratch:
            path = Path(scratch) / "chain.tar.gz"
            started = time.perf_counter()
            exported = bundle.export_bundle(env.db, tenant_id, path, [key.public])
            export_seconds = time.perf_counter() - started
            yield {"bench": NAME, "event": "exported", "events": exported.events,
                   "seconds": round(export_seconds, 2), "bytes": path.stat().st_size}
            for attempt in range(RUNS):
                count, fetch_seconds = bare_fetch(env, tenant_id)
                fetch_rates.append(count / fetch_seconds)
                report = verify.verify_chain(env.db, tenant_id, keys)
                if not report.clean:
                    raise RuntimeError(f"the bench chain does not verify: {report.finding}")
                db_rates.append(report.rate)
                children = _children_cpu()
                offline, _ = bundle.verify_bundle(path, [key.public])
                children = _children_cpu() - children
                if not offline.clean:
                    raise RuntimeError(f"the bench bundle does not verify: {offline.finding}")
                bundle_rates.append(offline.rate)
                db_cpu.append(report.events / report.cpu_seconds)
                bundle_cpu.append(offline.events / offline.cpu_seconds)
                bundle_all_cpu.append(offline.events / (offline.cpu_seconds + children))
                yield {"bench": NAME, "event": "run", "run": attempt + 1, "events": report.events,
                       "checkpoints": report.checkpoints, "db_verify_per_s": round(report.rate),
                       "bundle_verify_per_s": round(offline.rate), "bare_fetch_per_s": round(count / fetch_seconds),
                       "db_verify_per_cpu_s": round(db_cpu[-1]), "bundle_verify_per_cpu_s": round(bundle_cpu[-1]),
                       "bundle_verify_per_cpu_s_all_processes": round(bundle_all_cpu[-1]),
                       "load_average_1m": harness.load_average()}
        since = _since_run(env, tenant_id, keys)
        yield since
        db, fetch, offline_rate = (statistics.median(r) for r in (db_rates, fetch_rates, bundle_rates))
        yield harness.summary(
            NAME, "db_verify_events_per_s", db, fetch, "events/s",
            config=f"one chain of {size:,} events, a checkpoint every {PER_TRANSACTION:,}; median of {RUNS}",
            bundle_verify_events_per_s=round(offline_rate), bundle_ratio_to_fetch=round(offline_rate / fetch, 4),
            # Per second of this process's CPU (its threads included; the database server and the bundle's
            # gunzip child process excluded): what the verifier itself costs, whatever else the machine runs.
            db_verify_events_per_cpu_s=round(statistics.median(db_cpu)),
            bundle_verify_events_per_cpu_s=round(statistics.median(bundle_cpu)),
            # ...and per CPU-second of every process it uses (the worker processes and the gunzip child
            # included): divided into the cores free, what the bundle check can reach on a quiet machine.
            bundle_verify_events_per_cpu_s_all_processes=round(statistics.median(bundle_all_cpu)),
            # The summary value (DB verify) against the target, and the offline bundle check on its own:
            # one flag for both hid which of the two fell short.
            target=TARGET, meets_target=db >= TARGET, bundle_meets_target=offline_rate >= TARGET,
            load_average_1m=harness.load_average(),
        )


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (bundle workers and the gunzip child, once reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _since_run(env: harness.BenchEnv, tenant_id: uuid.UUID, keys: signing.TrustedKeys) -> dict[str, Any]:
    """`--since` the checkpoint three quarters in: the incremental check an auditor runs daily."""
    with tenant_session(env.db, tenant_id) as session:
        sizes = [c.tree_size for c in checkpoints.list_checkpoints(session)]
    since = sizes[len(sizes) * 3 // 4]
    report = verify.verify_chain(env.db, tenant_id, keys, since=since)
    return {"bench": NAME, "event": "since", "since": since, "events": report.events,
            "seconds": round(report.seconds, 3), "clean": report.clean}

