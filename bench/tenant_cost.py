"""What an institution and a patron cost: rows, bytes and audit events, measured on the demo's data.

Sets up the demo's two institutions (`bookwarden demo`) with no patron, then adds the demo's patrons with their
activity (200 each, `--quick` 25). Table sizes are `pg_total_relation_size` (heap, indexes, TOAST) of every table of
the data and keyring databases after VACUUM FULL (so sizes follow rows, not free space), read on the empty
database, after the set-up and after the patrons: an institution costs the set-up's growth, halved (an upper
bound: small tables round up to whole pages); a patron costs the patrons' growth divided by their number.

Audit events per patron-day: each request of the api_load mix (bench/_api_locust.py) is run through the app in
process (several times each) and the events it appends are counted; a day is the demo's borrowing rate (its loans
are spread over 200 days) with the mix's other requests in their proportion to loans. Everything then scales to
10,000 institutions and 100 million patrons, with the Citus layout `bookwarden db distribution-plan` prints.

Side by side: the same values the patrons' records hold, in bare rows (one plain table per kind, text columns, a
primary key): what the records would take without encryption, blind indexes, subject keys and audit.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import text

from bench import harness
from bookwarden import demo
from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.crypto.master import encode_key
from bookwarden.db import distribution, provision
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import records
from bookwarden.tenancy.models import Tenant

NAME = "tenant_cost"
DEMO_DAYS = 200  # demo.add_patrons spreads each patron's loans over the last 200 days
# The api_load mix (bench/_api_locust.py task weights): requests in proportion to loans written.
MIX = {
    "read_patron": 40,
    "lookup": 10,
    "list_patrons": 8,
    "list_loans": 5,
    "lend": 15,
    "search": 15,
    "sign_in": 3,
    "privacy_request": 1,
}
INSTITUTIONS = 10_000
PATRONS = 100_000_000
PEAK_TO_AVERAGE = 5  # assumed: a day's busiest hour carries five times the average rate
AUDIT_TABLES = ("audit_events", "audit_event_contexts")
FETCH = {"X-Requested-With": "fetch"}


def _connect(env: harness.BenchEnv, database: str) -> psycopg.Connection:
    # The server's administrative role: it reads past row-level security, as sizes must.
    return psycopg.connect(provision.libpq(env.admin.set(database=database)), autocommit=True)


def _tables(env: harness.BenchEnv) -> dict[str, tuple[int, int]]:
    """Every table of both databases: name -> (rows, bytes incl. indexes and TOAST), after VACUUM."""
    found = {}
    for database, prefix in (
        (env.urls.app.database, ""),
        (provision.keyring_database(env.urls.app.database), "keyring."),
    ):
        with _connect(env, database) as conn:
            conn.execute("VACUUM FULL")  # compact: sizes follow rows, not the free space left behind
            names = conn.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'"
            ).fetchall()
            for name, size in names:
                rows = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                found[prefix + name] = (rows, size)
    return found


def _growth(after: dict, before: dict, per: float) -> dict[str, tuple[float, float]]:
    return {
        name: (
            (after[name][0] - before.get(name, (0, 0))[0]) / per,
            (after[name][1] - before.get(name, (0, 0))[1]) / per,
        )
        for name in after
    }


def _by_table(growth: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    return {
        name: {"rows": round(rows, 2), "bytes": round(size)}
        for name, (rows, size) in sorted(growth.items(), key=lambda item: -item[1][1])
        if rows or size
    }


def _events(env: harness.BenchEnv) -> int:
    with _connect(env, env.urls.app.database) as conn:
        return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]


def _captured_values() -> tuple[dict[str, list[dict[str, Any]]], Any]:
    """A stand-in for records.create that also keeps each record's plain values (for the bare side)."""
    kept: dict[str, list[dict[str, Any]]] = {}
    original = records.create

    def create(session, kind, data):
        made = original(session, kind, data)
        kept.setdefault(kind.table, []).append(data.model_dump(mode="json"))
        return made

    return kept, create


def _bare_bytes(env: harness.BenchEnv, kept: dict[str, list[dict[str, Any]]]) -> int:
    """The same values in plain rows: a uuid key and a text column per field, no other index."""
    total = 0
    with _connect(env, env.urls.app.database) as conn:
        for table, rows in kept.items():
            columns = sorted({column for row in rows for column in row})
            bare = f"bare_{table}"
            conn.execute(
                f"CREATE TABLE {bare} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                + ", ".join(f"{c} text" for c in columns)
                + ")"
            )
            empty = conn.execute(f"SELECT pg_total_relation_size('{bare}')").fetchone()[0]  # the key's metapage
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {bare} ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})",
                    [tuple(None if row.get(c) is None else str(row[c]) for c in columns) for row in rows],
                )
            conn.execute(f"VACUUM FULL {bare}")
            total += conn.execute(f"SELECT pg_total_relation_size('{bare}')").fetchone()[0] - empty
    return total


def _requests(
    env: harness.BenchEnv, settings: Settings, slug: str, access: demo.DemoAccess, patron_ids, emails, repeat: int
):
    """Each request of the mix, `repeat` times: audit events appended per request and mean seconds in the app."""
    rng = random.Random(17)
    app = create_app(env.db, settings)
    staff = TestClient(app, headers={"Authorization": f"Bearer {access.api_token}"})
    logins = list(access.patron_logins)

    def sign_in(login: tuple[str, str] | None = None) -> TestClient:
        person = TestClient(app, base_url="https://testserver")  # the session cookie is Secure
        username, password = login or logins[rng.randrange(len(logins))]
        answer = person.post(
            "/api/v1/auth/login", json={"institution": slug, "username": username, "password": password}, headers=FETCH
        )
        assert answer.status_code == 200, answer.text
        return person

    def lend():
        return staff.post(
            "/api/v1/loans",
            json={
                "patron_id": rng.choice(patron_ids),
                "item_id": f"item-{rng.randrange(10**6)}",
                "borrowed_at": "2026-12-01T10:00:00+00:00",
                "due_at": "2026-12-22T10:00:00+00:00",
            },
        )

    calls = {
        "read_patron": lambda: staff.get(f"/api/v1/patrons/{rng.choice(patron_ids)}"),
        "lookup": lambda: staff.post("/api/v1/patrons/lookup", json={"by": "email", "value": rng.choice(emails)}),
        "list_patrons": lambda: staff.get("/api/v1/patrons?limit=20"),
        "list_loans": lambda: staff.get("/api/v1/loans?limit=20"),
        "lend": lend,
        "search": lambda: staff.post("/api/v1/searches", json={"patron_id": rng.choice(patron_ids), "query": "rust"}),
        "sign_in": sign_in,
    }
    measured = {}
    for name, call in calls.items():
        times = min(repeat, 3) if name == "sign_in" else repeat  # argon2id: slow on purpose
        call()  # once unmeasured: the first call of a route pays for compiling its queries
        before, started = _events(env), time.perf_counter()
        for _ in range(times):
            answer = call()
            assert getattr(answer, "status_code", 200) < 300, (name, answer.text)
        measured[name] = {
            "events": (_events(env) - before) / times,
            "ms": round(1000 * (time.perf_counter() - started) / times, 1),
        }
    # A privacy request: each portal patron may hold one open access request, so one per demo sign-in.
    request_events, spent = 0, 0.0
    for login in logins:
        person = sign_in(login)
        before, started = _events(env), time.perf_counter()
        answer = person.post("/api/v1/privacy/me/requests", json={"kind": "access"}, headers=FETCH)
        spent += time.perf_counter() - started
        request_events += _events(env) - before  # the request's own events (the sign-in is measured above)
        assert answer.status_code == 201, answer.text
    measured["privacy_request"] = {
        "events": request_events / len(logins),
        "ms": round(1000 * spent / len(logins), 1),
    }
    return measured


def run(quick: bool) -> Iterator[dict[str, Any]]:
    patrons_each = 25 if quick else demo.PATRONS_EACH
    repeat = 3 if quick else 20
    with harness.bench_env() as env:
        settings = Settings(
            home=env.home,
            database_url=provision.libpq(env.admin),
            database_name=harness.BENCH_DATABASE,
            master_key=encode_key(env.master.current),
        )
        empty = _tables(env)
        started = time.perf_counter()
        demo.seed(env.db, settings, patrons_each=0)  # the demo's institutions as set up, before any patron
        set_up = _tables(env)
        with platform_session(env.db) as session:
            tenants = session.query(Tenant).order_by(Tenant.slug).all()
        kept, capturing = _captured_values()
        with harness.patched(records, "create", capturing):
            for n, tenant in enumerate(tenants):
                demo.add_patrons(env.db, tenant, random.Random(2026 + n), patrons_each)
        grown = _tables(env)
        issued = demo.seed(env.db, settings)  # already seeded: fresh credentials, portal accounts for the first
        patrons = patrons_each * len(tenants)
        yield {
            "bench": NAME,
            "event": "setup",
            "quick": quick,
            "server": env.server,
            **env.server_settings(),
            "institutions": len(tenants),
            "patrons": patrons,
            "seed_seconds": round(time.perf_counter() - started, 1),
            "load_average_1m": harness.load_average(),
        }

        per_patron = _growth(grown, set_up, patrons)
        patron_rows = sum(rows for rows, _ in per_patron.values())
        patron_bytes = sum(size for _, size in per_patron.values())
        per_institution = _growth(set_up, empty, len(tenants))
        institution_rows = sum(rows for rows, _ in per_institution.values())
        institution_bytes = sum(size for _, size in per_institution.values())
        audit_bytes = sum(per_patron[t][1] for t in AUDIT_TABLES)
        bytes_per_event = audit_bytes / per_patron["audit_events"][0]
        yield {
            "bench": NAME,
            "event": "per_patron",
            "rows": round(patron_rows, 2),
            "bytes": round(patron_bytes),
            "audit_events": round(per_patron["audit_events"][0], 2),
            "audit_bytes": round(audit_bytes),
            "bytes_per_audit_event": round(bytes_per_event),
            "by_table": _by_table(per_patron),
        }
        yield {
            "bench": NAME,
            "event": "per_institution",
            "note": "the demo's set-up before its patrons: accounts, roles, token, notice, keys; small tables round "
            "up to whole pages, so an upper bound",
            "rows": round(institution_rows, 1),
            "bytes": round(institution_bytes),
            "by_table": _by_table(per_institution),
        }

        slug, tenant = tenants[0].slug, tenants[0]
        # A day: the demo's loans per patron over its 200 days, and the mix's other requests around them.
        with tenant_session(env.db, tenant.id) as session:
            patron_ids = [str(i) for i in session.execute(text("SELECT id FROM patrons")).scalars()]
            emails = [records.read(session, records.PATRONS, i).email for i in patron_ids[:50]]
        measured = _requests(env, settings, slug, issued[slug], patron_ids, emails, repeat)
        loans_per_day = per_patron["loans"][0] / DEMO_DAYS
        rates = {name: loans_per_day * weight / MIX["lend"] for name, weight in MIX.items()}
        events_per_day = sum(rates[name] * measured[name]["events"] for name in MIX)
        requests_per_day = sum(rates.values())
        request_seconds = sum(rates[n] * measured[n]["ms"] for n in MIX) / requests_per_day / 1000
        yield {
            "bench": NAME,
            "event": "patron_day",
            "loans_per_patron_day": round(loans_per_day, 4),
            "requests_per_patron_day": round(requests_per_day, 4),
            "audit_events_per_patron_day": round(events_per_day, 4),
            "per_request": measured,
            "mean_request_ms_in_process": round(request_seconds * 1000, 1),
        }

        # Scaled up.
        with _connect(env, env.urls.app.database) as conn:
            plan = distribution.plan(distribution.read_tables(conn))
        distributed = set(plan.distributed)
        tenant_bytes = sum(size for name, (_, size) in per_patron.items() if name in distributed)
        storage = PATRONS * patron_bytes + INSTITUTIONS * institution_bytes
        events = PATRONS * events_per_day
        peak = PATRONS * requests_per_day / 86_400 * PEAK_TO_AVERAGE
        retention_years = Settings().audit_retention_days / 365
        yield {
            "bench": NAME,
            "event": "at_scale",
            "institutions": INSTITUTIONS,
            "patrons": PATRONS,
            "storage_tb": round(storage / 1e12, 2),
            "audit_events_per_day": round(events),
            "audit_gb_per_day": round(events * bytes_per_event / 1e9, 2),
            "audit_tb_kept": round(events * bytes_per_event * 365 * retention_years / 1e12, 2),
            "requests_per_s_average": round(PATRONS * requests_per_day / 86_400, 1),
            "requests_per_s_peak": round(peak, 1),
            # Little's law: requests in flight at the peak (each holds a server connection for less than its time).
            "requests_in_flight_at_peak": round(peak * request_seconds, 1),
            "citus": {
                "distributed_tables": len(plan.distributed),
                "reference_tables": len(plan.reference),
                "blockers": len(plan.blockers),
                "share_of_patron_bytes_distributed": round(tenant_bytes / patron_bytes, 3),
            },
        }
        bare = _bare_bytes(env, kept) / patrons
        yield harness.summary(
            NAME,
            "bytes_per_patron",
            patron_bytes,
            bare,
            "bytes",
            config=f"demo: {len(tenants)} institutions x {patrons_each} patrons",
            rows_per_patron=round(patron_rows, 2),
            bytes_per_institution=round(institution_bytes),
            audit_events_per_patron_day=round(events_per_day, 4),
            storage_tb_at_scale=round(storage / 1e12, 2),
            load_average_1m=harness.load_average(),
            cpus=os.cpu_count(),
        )
