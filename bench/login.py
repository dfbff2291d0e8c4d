"""Sign-in latency at the configured argon2id cost, with 10 sign-ins in flight at once.

Each worker thread signs in again and again (`identity.signin.sign_in`: address throttle,
tenant and account lookup through blind indexes, argon2id verification, account throttle,
session creation) as one of 10 staff accounts, each from its own address so the per-address
throttle never engages. Baseline: the bare argon2id verification of the same password at the
same cost and the same concurrency, so the ratio shows what everything around the hash adds.

Argon2 releases the GIL while hashing, so the threads really run the hashes in parallel (on
this machine: 2 cores, so 10 in flight mostly queue).
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from bench import harness
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.identity.signin import service as signin
from bookwarden.tenancy import service as tenancy

NAME = "login"
CONCURRENCY = 10
PASSWORD = "lantern quietly orbits marmalade"  # noqa: S105 - the bench accounts' password


def _seed(env: harness.BenchEnv) -> None:
    with platform_session(env.db) as session:
        tenant = tenancy.create_tenant(session, env.db.keyring, env.home, "bench", "Bench University")
    admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with tenant_session(env.db, tenant.id) as session:
        for n in range(CONCURRENCY):
            accounts.create_account(session, admin, kind=AccountKind.STAFF, username=f"staff{n}", password=PASSWORD)


def _sign_in(env: harness.BenchEnv, worker: int) -> None:
    attempt = signin.SignInAttempt(
        institution="bench",
        username=f"staff{worker}",
        password=PASSWORD,
        source_address=f"10.{worker}.0.1",
        user_agent="bench",
    )
    if signin.sign_in(env.db, attempt).second_factor_pending:
        raise RuntimeError("bench accounts hold no role that needs a second factor")


def _concurrently(rounds: int, work: Callable[[int], None]) -> list[float]:
    """Latencies in ms of `rounds` calls per worker, CONCURRENCY workers at once."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        mine = []
        try:
            for _ in range(rounds):
                started = time.perf_counter()
                work(n)
                mine.append((time.perf_counter() - started) * 1000)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return latencies


def _percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "p50_ms": round(cuts[49], 1),
        "p99_ms": round(cuts[98], 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }


def run(quick: bool) -> Iterator[dict[str, Any]]:
    rounds = 2 if quick else 20
    params = passwords.DEFAULT
    stored = passwords.hash_password(PASSWORD, params)
    with harness.bench_env(pool_size=CONCURRENCY) as env:
        _seed(env)
        yield {
            "bench": NAME,
            "event": "setup",
            "concurrency": CONCURRENCY,
            "rounds_per_worker": rounds,
            "argon2id": {
                "memory_kib": params.memory_cost,
                "time_cost": params.time_cost,
                "parallelism": params.parallelism,
            },
            "load_average_1m": harness.load_average(),
        }
        _concurrently(1, lambda n: _sign_in(env, n))  # warm pools and caches
        sign_ins = _percentiles(_concurrently(rounds, lambda n: _sign_in(env, n)))
        hashes = _percentiles(_concurrently(rounds, lambda n: passwords.verify_password(stored, PASSWORD, params)))
        yield {"bench": NAME, "event": "latency", "sign_in": sign_ins, "bare_argon2id_verify": hashes}
        yield harness.summary(
            NAME,
            "sign_in_p50_ms",
            sign_ins["p50_ms"],
            hashes["p50_ms"],
            "ms",
            p99_ms=sign_ins["p99_ms"],
            baseline_p99_ms=hashes["p99_ms"],
            sign_ins=rounds * CONCURRENCY,
            concurrency=CONCURRENCY,
            load_average_1m=harness.load_average(),
        )
