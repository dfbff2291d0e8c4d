"""Usage metering for charges: API calls and events of a calendar month from the trail, records and
stored bytes from the tables, per institution; the console report and the operator route."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from bookwarden.audit import record as audit
from bookwarden.audit import search
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.audit.search import EventQuery
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import LIBRARY_READ, LIBRARY_WRITE, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.tokens import service as tokens
from bookwarden.library import usage as metering
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_cli import cli_env  # noqa: F401 - the CLI pointed at the test database
from tests.helpers import acting, populate

USAGE = "/api/v1/operator/usage"
READER = acting(None, Permission.PLATFORM_USAGE_READ)


def rid() -> str:
    return str(uuid.uuid4())


def clerk(app, db, tenant_id, permissions=LIBRARY_READ | LIBRARY_WRITE) -> TestClient:
    with tenant_session(db, tenant_id) as session:
        _, secret = tokens.issue_api_token(session, "clerk", sorted(permissions), timedelta(hours=1))
    return TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {secret}"})


class Counted:
    """A client that sends every request under a request id of its own and keeps the ids."""

    def __init__(self, client: TestClient):
        self.client, self.request_ids = client, []

    def request(self, method: str, path: str, **kw):
        response = self.client.request(method, path, headers={"X-Request-ID": rid()}, **kw)
        self.request_ids.append(response.headers["x-request-id"])
        return response

    def post(self, path: str, **kw):
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)


def stored_bytes(superuser_conn, table: str, tenant_id) -> tuple[int, int]:
    """(rows, bytes) of one institution in `table`, read past row-level security by the superuser."""
    return superuser_conn.execute(
        f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t WHERE tenant_id = %s",  # noqa: S608
        (tenant_id,),
    ).fetchone()


def test_a_month_with_known_traffic(committed_db, committed_tenant, settings, superuser_conn):
    from bookwarden.api.app import create_app

    app = create_app(committed_db, settings)
    ours, theirs = committed_tenant(), committed_tenant()
    desk = Counted(clerk(app, committed_db, ours))
    made = populate(desk)  # one record of every kind: 6 calls
    patron = made[next(k for k in made if k.table == "patrons")]["id"]
    assert desk.get(f"/api/v1/patrons/{patron}").status_code == 200
    assert desk.get(f"/api/v1/patrons/{uuid.uuid4()}").status_code == 404  # refused calls count too
    reader = Counted(clerk(app, committed_db, ours, LIBRARY_READ))
    assert reader.post("/api/v1/patrons", json={"name": "Refused"}).status_code == 403
    forged = TestClient(app, raise_server_exceptions=False, headers={"Authorization": "Bearer bwt_" + "x" * 43})
    assert forged.get("/api/v1/patrons").status_code == 401  # reached no institution: not its call
    reused = clerk(app, committed_db, ours, LIBRARY_READ)  # one X-Request-ID for three calls: still three
    for _ in range(3):
        assert reused.get("/api/v1/patrons", headers={"X-Request-ID": "same-id-every-time"}).status_code == 200
    populate(Counted(clerk(app, committed_db, theirs)), 1)  # another institution's traffic and records
    console = Principal(PrincipalKind.SYSTEM, uuid.uuid4(), None, frozenset(Permission))
    context = audit.Context(console, "console", "bookwarden-cli", rid())
    with audit.acting(context), tenant_session(committed_db, ours) as session:  # an event, not a call
        audit.record(session, Action.AUDIT_SEARCHED)

    month = metering.current_month()
    [(slug, usage)] = metering.report(committed_db, READER, month, ours)
    assert usage.api_calls == len(desk.request_ids) + len(reader.request_ids) + 3 == 12
    with tenant_session(committed_db, ours) as session:
        chain_length = session.execute(text("SELECT seq FROM audit_heads")).scalar_one()
    assert usage.events_recorded == chain_length >= 10  # every event of the fresh institution is this month's
    assert {name: u.rows for name, u in usage.tables.items() if name != "audit_events"} == {
        t: 1 for t in ("patrons", "loans", "searches", "reading_lists", "reading_list_items", "posts")
    }
    assert usage.records_held == 6
    for name, measured in usage.tables.items():
        assert (measured.rows, measured.bytes) == stored_bytes(superuser_conn, name, ours), name
        assert measured.bytes > 0
    assert usage.storage_bytes == sum(u.bytes for u in usage.tables.values())

    # A patron with a 4,000-character address: one more call, one more record, at least 4,000 more bytes
    # (the ciphertext of random-looking data does not compress).
    response = desk.post("/api/v1/patrons", json={"name": "Long Address", "postal_address": "x" * 4000})
    assert response.status_code == 201
    [(_, after)] = metering.report(committed_db, READER, month, slug)
    assert after.api_calls == usage.api_calls + 1
    assert after.tables["patrons"].rows == 2
    assert 4000 <= after.tables["patrons"].bytes - usage.tables["patrons"].bytes < 4000 + 1000


def test_a_month_without_traffic_reports_zeros(db, tenant, make_tenant, client_for):
    populate(client_for(tenant))
    with tenant_session(db, tenant.id) as session:
        quiet = metering.measure(session, "2001-01")
    assert (quiet.month, quiet.api_calls, quiet.events_recorded) == ("2001-01", 0, 0)
    assert quiet.records_held == 6  # records are as of the report, whatever the month

    idle = make_tenant("idle-institution")
    with tenant_session(db, idle.id) as session:
        nothing = metering.measure(session, metering.current_month())
    assert (nothing.api_calls, nothing.records_held) == (0, 0)
    assert all(u == metering.TableUsage(0, 0) for name, u in nothing.tables.items() if name != "audit_events")


def backdated(session, when: datetime, actor: Principal, request_id: str | None, action=Action.PATRON_VIEWED):
    """An event as if recorded at `when`, appended through the chain like any other."""
    with audit.acting(audit.Context(actor, "192.0.2.1", "test", request_id)):
        event = audit.record(session, action, ("patron", uuid.uuid4()))
    session.info[audit.PENDING][-1] = dataclasses.replace(event, occurred_at=when)


def test_calendar_months_in_utc_and_what_counts_as_a_call(db, tenant):
    token = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, frozenset())
    system = Principal(PrincipalKind.SYSTEM, uuid.uuid4(), None, frozenset())
    support = Principal(PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), tenant.id, frozenset(), grant_id=uuid.uuid4())
    one, two, first_instant, console, march, late = (rid() for _ in range(6))
    with tenant_session(db, tenant.id) as session:
        backdated(session, datetime(2025, 1, 31, 23, 59, 59, 999999, tzinfo=UTC), token, rid())
        backdated(session, datetime(2025, 2, 1, tzinfo=UTC), token, first_instant)
        backdated(session, datetime(2025, 2, 10, tzinfo=UTC), token, one)
        backdated(session, datetime(2025, 2, 10, 0, 0, 1, tzinfo=UTC), token, one)  # one call, two events
        backdated(session, datetime(2025, 2, 14, tzinfo=UTC), token, two)
        backdated(session, datetime(2025, 2, 20, tzinfo=UTC), system, console)  # the console: not a call
        backdated(session, datetime(2025, 2, 21, tzinfo=UTC), system, None)  # a scheduled duty
        backdated(session, datetime(2025, 2, 22, tzinfo=UTC), support, rid())  # operator support under a grant
        backdated(session, datetime(2025, 2, 28, 23, 59, 59, 999999, tzinfo=UTC), token, late)
        backdated(session, datetime(2025, 3, 1, tzinfo=UTC), token, march)
        # 23:30 on February 28th an hour west of Greenwich is already March in UTC.
        backdated(session, datetime(2025, 2, 28, 23, 30, tzinfo=timezone(timedelta(hours=-1))), token, rid())
    with tenant_session(db, tenant.id) as session:
        usage = {m: metering.measure(session, m) for m in ("2025-01", "2025-02", "2025-03", "2025-04", "9999-12")}
    assert {m: (u.api_calls, u.events_recorded) for m, u in usage.items()} == {
        "2025-01": (1, 1),
        "2025-02": (4, 8),  # first_instant, one, two, late; plus the console's, the duty's and support's events
        "2025-03": (2, 2),
        "2025-04": (0, 0),
        "9999-12": (0, 0),  # the last month there is: its end is past what Python dates hold
    }


@pytest.mark.parametrize("month", ["2025-13", "2025-1", "0000-01", "25-01", "2025-01-01", ""])
def test_a_month_that_is_not_one_is_refused(db, tenant, month):
    with tenant_session(db, tenant.id) as session, pytest.raises(InvalidInput, match="YYYY-MM"):
        metering.measure(session, month)


# -- the operator route ----------------------------------------------------------------------


def test_operators_read_usage_per_institution_and_the_report_is_recorded(
    app, db, tenant, other_tenant, client_for, operator_token
):
    populate(client_for(tenant))
    operator = TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {operator_token}"})
    month = metering.current_month()
    one = operator.get(USAGE, params={"month": month, "tenant_id": str(tenant.id)})
    assert one.status_code == 200, one.text
    [row] = one.json()
    assert (row["slug"], row["month"], row["api_calls"], row["records_held"]) == ("alpha", month, 6, 6)
    assert row["storage_bytes"] == sum(t["bytes"] for t in row["tables"].values())
    every = operator.get(USAGE).json()  # this month, every institution
    assert {r["slug"] for r in every} >= {"alpha", "beta"}
    assert next(r for r in every if r["slug"] == "beta")["records_held"] == 0

    assert operator.get(USAGE, params={"tenant_id": str(uuid.uuid4())}).status_code == 404
    assert operator.get(USAGE, params={"month": "2025-13"}).status_code == 422
    assert client_for(tenant, permissions={Permission.AUDIT_READ}).get(USAGE).status_code == 403

    with tenant_session(db, PLATFORM_CHAIN) as session:
        reports = search.search(session, EventQuery(action="usage.reported", order=search.Order.OLDEST)).events
    assert [e["details"] for e in reports] == [
        {"month": month, "tenants": 1, "tenant_id": str(tenant.id)},
        {"month": month, "tenants": len(every)},
    ]
    assert {e["actor_kind"] for e in reports} == {"operator_token"}
    # Reported on the platform's chain: measuring an institution is no call of its own.
    with tenant_session(db, tenant.id) as session:
        assert search.search(session, EventQuery(action="usage.")).events == []


# -- the console -----------------------------------------------------------------------------


def test_console_usage_report_as_table_json_and_csv(cli_env, committed_db, committed_tenant):  # noqa: F811
    from bookwarden.cli import app

    tenant_id = committed_tenant()
    with platform_session(committed_db) as session:
        slug = tenancy.get_tenant(session, tenant_id).slug
    runner = CliRunner()
    month = metering.current_month()

    table = runner.invoke(app, ["usage", "report", "--tenant", slug])
    assert table.exit_code == 0, table.output
    assert slug in table.stdout and "API calls" in table.stdout and month in table.stdout

    as_json = runner.invoke(app, ["usage", "report", "--tenant", slug, "--month", "2001-01", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    [report] = json.loads(as_json.stdout)
    assert (report["slug"], report["tenant_id"], report["month"]) == (slug, str(tenant_id), "2001-01")
    assert (report["api_calls"], report["events_recorded"], report["records_held"]) == (0, 0, 0)

    as_csv = runner.invoke(app, ["usage", "report", "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    mine = next(r for r in rows if r["slug"] == slug)
    assert mine["tenant_id"] == str(tenant_id) and mine["records_held"] == "0" and mine["patrons_rows"] == "0"
    assert list(rows[0])[-2:] == ["audit_events_rows", "audit_events_bytes"]

    refused = runner.invoke(app, ["usage", "report", "--month", "March"])  # bookwarden.cli.main prints it, exit 2
    assert isinstance(refused.exception, InvalidInput) and "YYYY-MM" in refused.exception.detail
    with tenant_session(committed_db, PLATFORM_CHAIN) as session:
        reports = search.search(session, EventQuery(action="usage.reported")).events
    assert len(reports) == 3 and {e["actor_kind"] for e in reports} == {"console"}
