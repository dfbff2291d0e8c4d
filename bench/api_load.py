"""Load over real HTTP: Locust (headless) at 32 concurrent clients against `bookwarden serve --workers 2`.

A mixed workload (bench/_api_locust.py): patron reads by id (40 %), lookups by e-mail, lists of patrons
and loans, loans written, searches logged, portal sign-ins (about 3 %) and a privacy request now and
then (a sign-in and an access request, about 1 %), on the demo's institutions, tokens and portal
accounts. Side by side, in the same run and on the same server: the same HTTP stack (FastAPI, uvicorn,
2 workers) answering the same paths with the same JSON from bare SQL (bench/api_baseline.py): no
authentication, row-level security, decryption or audit; the baseline does no sign-ins or privacy
requests. Reported: requests/s, p50/p95/p99 and `errors` (any 5xx or transport error) for both, the
ratio, and where a Bookwarden request spends its time (mean server time per route, read from /metrics,
which sums both workers). Locust itself runs in one process on the same machine and takes CPU too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import harness
from bookwarden import demo
from bookwarden.core.config import Settings
from bookwarden.crypto.master import encode_key
from bookwarden.db import provision
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import records

NAME = "api_load"
CLIENTS = 32
WORKERS = 2
ROOT = Path(__file__).resolve().parents[1]
METRICS_TOKEN = secrets.token_urlsafe(32)  # a throwaway server's, for this run only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed(env: harness.BenchEnv, settings: Settings, patrons: int) -> dict[str, Any]:
    issued = demo.seed(env.db, settings, patrons_each=patrons)
    with env.owner_connection() as conn:
        conn.execute(
            "CREATE TABLE bare_patrons (tenant_id uuid, id uuid PRIMARY KEY, name text, email text, phone text, "
            "postal_address text, institutional_id text, affiliation text, birth_date date, barcode text, "
            "status text, created_at timestamptz, updated_at timestamptz)"
        )
        conn.execute("CREATE INDEX ON bare_patrons (email)")
        conn.execute(
            "CREATE TABLE bare_loans (id uuid PRIMARY KEY, patron_id uuid, item_id text, item_title text, "
            "borrowed_at timestamptz, due_at timestamptz, returned_at timestamptz)"
        )
        conn.execute(
            "CREATE TABLE bare_searches (id uuid PRIMARY KEY, patron_id uuid, query text, searched_at timestamptz)"
        )
        conn.execute(f"GRANT SELECT, INSERT ON bare_patrons, bare_loans, bare_searches TO {provision.APP_ROLE}")
    with platform_session(env.db) as session:
        slugs = dict(session.execute(text("SELECT slug, id FROM tenants")).all())
    tenants = []
    bare = []
    for slug, access in issued.items():
        with tenant_session(env.db, slugs[slug]) as session:
            ids = list(session.execute(text("SELECT id FROM patrons")).scalars())
            read = [records.read(session, records.PATRONS, i) for i in ids]
        bare += [{"tenant_id": str(slugs[slug]), **p.model_dump(mode="json")} for p in read]
        tenants.append(
            {
                "slug": slug,
                "token": access.api_token,
                "patron_ids": [str(i) for i in ids],
                "emails": [p.email for p in read if p.email],
                "logins": [list(pair) for pair in access.patron_logins],
            }
        )
    with env.owner_connection() as conn, conn.cursor() as cur:
        columns = list(bare[0])
        cur.executemany(
            f"INSERT INTO bare_patrons ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})",
            [tuple(row[c] for c in columns) for row in bare],
        )
    return {"tenants": tenants}


def _serve(command: list[str], environ: dict[str, str], port: int, ready_path: str) -> subprocess.Popen:
    process = subprocess.Popen(command, env=environ, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sys.stderr)  # noqa: S603
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{command[:4]} did not answer within 120 s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _locust(port: int, data: Path, seconds: int, baseline: bool, folder: Path) -> dict[str, Any]:
    prefix = folder / ("baseline" if baseline else "bookwarden")
    environ = {**os.environ, "BENCH_API_LOAD_DATA": str(data), "BENCH_API_LOAD_BASELINE": "1" if baseline else "0"}
    subprocess.run(  # noqa: S603 - our own command line
        [
            sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "_api_locust.py"), "--headless",
            "-u", str(CLIENTS), "-r", str(CLIENTS), "-t", f"{seconds}s", "-H", f"http://127.0.0.1:{port}",
            "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10",
        ],
        env=environ, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sys.stderr, check=False, timeout=seconds + 120,
    )  # fmt: skip
    with open(f"{prefix}_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    total = rows.pop("Aggregated")
    by_status: dict[str, int] = {}
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        with failures.open() as f:
            for r in csv.DictReader(f):
                by_status[r["Error"]] = by_status.get(r["Error"], 0) + int(r["Occurrences"])
    return {
        "requests": int(total["Request Count"]),
        "requests_per_s": float(total["Requests/s"]),
        "p50_ms": float(total["50%"]),
        "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]),
        "errors": int(total["Failure Count"]),
        "error_kinds": by_status,
        "routes": {
            name: {"requests": int(r["Request Count"]), "p50_ms": float(r["50%"]), "p95_ms": float(r["95%"])}
            for name, r in rows.items()
        },
    }


def _server_time(port: int) -> dict[str, dict[str, float]]:
    """Per route, from /metrics (every worker's, summed): mean time inside the app (ms) and its share of the time."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        body = answer.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in body.splitlines():
        found = re.match(r'bookwarden_http_request_seconds_(sum|count)\{method="(\w+)",route="([^"]+)"\} (\S+)', line)
        if found:
            kind, method, route, value = found.groups()
            (sums if kind == "sum" else counts)[f"{method} {route}"] = float(value)
    sums.pop("GET /healthz", None)  # the bench's own readiness polls, while the worker was starting
    total = sum(sums.values()) or 1.0
    return {
        k: {"mean_ms": round(1000 * sums[k] / counts[k], 2), "share": round(sums[k] / total, 3)}
        for k in sorted(sums, key=sums.get, reverse=True)
        if counts.get(k)
    }


def run(quick: bool) -> Iterator[dict[str, Any]]:
    seconds = 10 if quick else 60
    patrons = 50 if quick else 200
    with harness.bench_env() as env, tempfile.TemporaryDirectory(prefix="bookwarden-api-load-") as scratch:
        folder = Path(scratch)
        admin = provision.libpq(env.admin)
        settings = Settings(
            home=env.home,
            database_url=admin,
            database_name=harness.BENCH_DATABASE,
            master_key=encode_key(env.master.current),
        )
        started = time.perf_counter()
        data = _seed(env, settings, patrons)
        data_file = folder / "data.json"
        data_file.write_text(json.dumps(data))
        yield {
            "bench": NAME,
            "event": "setup",
            "quick": quick,
            "server": env.server,
            **env.server_settings(),
            "cpus": os.cpu_count(),
            "load_average_1m": harness.load_average(),
            "institutions": len(data["tenants"]),
            "patrons_each": patrons,
            "clients": CLIENTS,
            "workers": WORKERS,
            "seconds": seconds,
            "seed_seconds": round(time.perf_counter() - started, 1),
        }
        environ = {
            **os.environ,
            "BOOKWARDEN_HOME": str(env.home),
            "BOOKWARDEN_DATABASE_URL": admin,
            "BOOKWARDEN_DATABASE_NAME": harness.BENCH_DATABASE,
            "BOOKWARDEN_MASTER_KEY": encode_key(env.master.current),
            "BOOKWARDEN_METRICS_TOKEN": METRICS_TOKEN,
            "BOOKWARDEN_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        results = {}
        for side in ("baseline", "bookwarden"):
            port = _free_port()
            if side == "bookwarden":
                command = [
                    sys.executable,
                    "-m",
                    "bookwarden.cli",
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    str(WORKERS),
                ]
                ready = "/healthz"
            else:
                environ["BENCH_BASELINE_URL"] = env.urls.app.render_as_string(hide_password=False)
                command = [
                    sys.executable, "-m", "uvicorn", "bench.api_baseline:from_environment", "--factory",
                    "--port", str(port), "--workers", str(WORKERS), "--log-level", "warning", "--no-access-log",
                ]  # fmt: skip
                ready = "/api/v1/patrons?limit=1"
            server = _serve(command, environ, port, ready)
            try:
                results[side] = _locust(port, data_file, seconds, side == "baseline", folder)
                if side == "bookwarden":
                    results[side]["server_ms_by_route"] = _server_time(port)
            finally:
                _stop(server)
            yield {
                "bench": NAME,
                "event": "run",
                "side": side,
                **results[side],
                "load_average_1m": harness.load_average(),
            }
        mine, bare = results["bookwarden"], results["baseline"]
        yield harness.summary(
            NAME,
            "requests_per_s",
            mine["requests_per_s"],
            bare["requests_per_s"],
            "requests/s",
            config=f"{CLIENTS} Locust clients, {seconds} s a side, serve --workers {WORKERS}, mixed workload",
            errors=mine["errors"] + bare["errors"],
            bookwarden_errors=mine["errors"],
            baseline_errors=bare["errors"],
            p50_ms=mine["p50_ms"],
            p95_ms=mine["p95_ms"],
            p99_ms=mine["p99_ms"],
            baseline_p50_ms=bare["p50_ms"],
            baseline_p95_ms=bare["p95_ms"],
            baseline_p99_ms=bare["p99_ms"],
            load_average_1m=harness.load_average(),
        )
