"""Retention: periods per institution and category (defaults from the registry, changes under maker-checker),
the preview and the daily purge sharing one selection, legal holds honoured, a crash mid-run resumed.

Time moves by rewriting stored times in SQL, as old rows would have them."""

from __future__ import annotations

import dataclasses
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from bookwarden import areas
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.audit import checkpoints, signing
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.config import get_settings
from bookwarden.core.errors import Conflict
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.jobs.service import handler_for
from bookwarden.library import records as library
from bookwarden.library.schemas import LoanCreate, PatronCreate, PostCreate, SearchCreate
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.retention import holds
from bookwarden.privacy.retention import jobs as retention_jobs
from bookwarden.privacy.retention import service as retention
from bookwarden.privacy.retention.models import RetentionCategory, RetentionRun
from bookwarden.privacy.retention.routes import router
from tests.e2e.test_cli import cli_env, granted  # noqa: F401 - fixture
from tests.helpers import acting

C = RetentionCategory
OFFICER = frozenset({Permission.PRIVACY_RETENTION_MANAGE, Permission.PRIVACY_HOLDS_MANAGE, Permission.ACCOUNTS_READ})
POLICIES = "/api/v1/privacy/retention/policies"


def officer(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, OFFICER)


def patron(session, name="Ann Patron", *, age_days: int = 0) -> uuid.UUID:
    made = library.create(session, library.PATRONS, PatronCreate(name=name, email="ann@alpha.example")).id
    if age_days:
        session.execute(
            text("UPDATE patrons SET created_at = now() - make_interval(days => :d) WHERE id = :id"),
            {"d": age_days, "id": made},
        )
    return made


def loan(session, patron_id, *, returned_days_ago: int | None) -> uuid.UUID:
    now = datetime.now(UTC)
    body = LoanCreate(patron_id=patron_id, item_id="item-1", item_title="Middlemarch", borrowed_at=now, due_at=now)
    made = library.create(session, library.LOANS, body).id
    if returned_days_ago is not None:
        session.execute(
            text(
                "UPDATE loans SET borrowed_at = now() - make_interval(days => :d + 20), "
                "returned_at = now() - make_interval(days => :d) WHERE id = :id"
            ),
            {"d": returned_days_ago, "id": made},
        )
    return made


def search(session, patron_id, *, days_ago: int) -> uuid.UUID:
    made = library.create(session, library.SEARCHES, SearchCreate(patron_id=patron_id, query="rare herbals")).id
    session.execute(
        text("UPDATE searches SET searched_at = now() - make_interval(days => :d) WHERE id = :id"),
        {"d": days_ago, "id": made},
    )
    return made


def count(session, table: str) -> int:
    return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608 - test table names


def report(db, tenant_id, run_id) -> dict[str, retention.CategoryCountOut]:
    with tenant_session(db, tenant_id) as session:
        run = retention.view_run(session, officer(tenant_id), run_id)
    return {line.category: line for line in run.categories}


def due(db, tenant_id) -> dict[str, retention.CategoryPreview]:
    with tenant_session(db, tenant_id) as session:
        return {line.category: line for line in retention.preview(session, officer(tenant_id))}


# -- periods -------------------------------------------------------------------------------------


def test_defaults_come_from_the_registrys_declared_retention(db, tenant):
    with tenant_session(db, tenant.id) as session:
        found = {p.category: p for p in retention.view_periods(session, officer(tenant.id))}
    assert found[C.LOAN_HISTORY].keep_days == 365  # circulation history: 1 year after return
    assert found[C.SEARCHES].keep_days == 90
    assert found[C.POSTS].keep_days is None  # until deleted by the author or a moderator
    assert found[C.INACTIVE_PATRONS].keep_days == 730
    assert found[C.EXPORTS].keep_days == retention.EXPORTS_DEFAULT_DAYS
    assert found[C.AUDIT_SEGMENTS].keep_days == get_settings().audit_retention_days
    assert {p.source for p in found.values()} == {"default"}


def test_a_period_is_asked_by_one_officer_applied_when_another_approves_and_mailed(db, tenant, client_for):
    with tenant_session(db, tenant.id) as session:
        add_security_contact(session, "security@alpha.example")
    maker, checker = client_for(tenant, permissions=OFFICER), client_for(tenant, permissions=OFFICER)
    asked = maker.put(f"{POLICIES}/searches", json={"keep_days": 30})
    assert asked.status_code == 202, asked.text
    approval = asked.json()["id"]
    searches = next(p for p in maker.get(POLICIES).json() if p["category"] == "searches")
    assert (searches["keep_days"], searches["source"]) == (90, "default")  # nothing changes before approval

    refused = maker.post(f"/api/v1/approvals/{approval}/approve")
    assert refused.status_code == 409 and refused.json()["type"].endswith("segregation-of-duties")
    approved = checker.post(f"/api/v1/approvals/{approval}/approve")
    assert approved.status_code == 200, approved.text
    searches = next(p for p in maker.get(POLICIES).json() if p["category"] == "searches")
    assert (searches["keep_days"], searches["source"]) == (30, "institution")

    with tenant_session(db, tenant.id) as session:
        changed = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'retention_policy.changed'")
        ).scalar_one()
        mails = [open_mail(session, m).subject for m in session.scalars(select(OutboxMessage))]
    assert changed["category"] == "searches" and changed["keep_days"] == 30 and changed["before"] == 90
    assert changed["approval_id"] == approval
    # The security contact is told (a kind nobody can mute), besides the notices of the test's tokens.
    assert "[Alpha University] security notice: retention period of personal data changed" in mails


def test_periods_stay_within_bounds_and_audit_never_under_the_platform_minimum(db, tenant, client_for):
    client = client_for(tenant, permissions=OFFICER)
    assert client.put(f"{POLICIES}/searches", json={"keep_days": 0}).status_code == 422
    assert client.put(f"{POLICIES}/loan_history", json={"keep_days": None}).status_code == 422  # no "for ever"
    assert client.put(f"{POLICIES}/posts", json={"keep_days": None}).status_code == 202  # posts may be
    platform = get_settings().audit_retention_days
    below = client.put(f"{POLICIES}/audit_segments", json={"keep_days": platform - 1})
    assert below.status_code == 409 and below.json()["type"].endswith("retention-below-platform-minimum")
    assert client.put(f"{POLICIES}/audit_segments", json={"keep_days": platform + 365}).status_code == 202
    assert client_for(tenant).put(f"{POLICIES}/searches", json={"keep_days": 30}).status_code == 403


def test_every_category_has_a_route_whose_schema_holds_its_bounds(app):
    schema = app.openapi()["paths"]
    for category in RetentionCategory:
        body = schema[f"{POLICIES}/{category}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].endswith("PeriodIn")
    assert len([r for r in router.routes if r.path.startswith(POLICIES + "/")]) == len(RetentionCategory)


# -- preview and purge -----------------------------------------------------------------------------


@pytest.fixture
def aged(db, tenant):
    """An institution with some of everything, old and new, and one patron under a legal hold."""
    ids = {}
    with tenant_session(db, tenant.id) as session:
        ids["reader"] = reader = patron(session, "Reader")
        ids["held"] = held = patron(session, "Held")
        ids["gone"] = patron(session, "Gone", age_days=900)  # no activity for 900 days: inactive
        ids["borrower"] = borrower = patron(session, "Borrower", age_days=900)
        loan(session, borrower, returned_days_ago=None)  # an open loan: never inactive
        ids["searcher"] = searcher = patron(session, "Searcher", age_days=900)
        search(session, searcher, days_ago=10)  # recent activity: not inactive
        ids["old_loans"] = [loan(session, reader, returned_days_ago=400) for _ in range(3)]
        ids["new_loan"] = loan(session, reader, returned_days_ago=100)
        ids["held_loan"] = loan(session, held, returned_days_ago=400)
        ids["old_searches"] = [search(session, reader, days_ago=100) for _ in range(4)]
        ids["new_search"] = search(session, reader, days_ago=5)
        ids["held_search"] = search(session, held, days_ago=100)
        library.create(session, library.POSTS, PostCreate(patron_id=reader, board="club", body="Old post"))
        session.execute(text("UPDATE posts SET created_at = now() - interval '5000 days'"))
        holds.place(session, officer(tenant.id), reason="Case 2026-114", patron_id=held)
    return ids


def test_the_preview_counts_exactly_what_the_run_then_removes(db, tenant, aged):
    before = due(db, tenant.id)
    assert before[C.LOAN_HISTORY].due == 3 and before[C.LOAN_HISTORY].held == 1
    assert before[C.SEARCHES].due == 4 and before[C.SEARCHES].held == 1
    assert before[C.INACTIVE_PATRONS].due == 1  # "Gone"; the held patron is young anyway
    assert before[C.POSTS].due == 0 and before[C.POSTS].keep_days is None  # kept until deleted
    assert before[C.SEARCHES].oldest < datetime.now(UTC) - timedelta(days=99)

    run_id = retention.run_purge(db, tenant.id, batch=2)
    removed = report(db, tenant.id, run_id)
    for category in RetentionCategory:
        assert removed[category].removed == before[category].due, category
        assert removed[category].held == before[category].held, category
        assert removed[category].errors == 0 and removed[category].done
    after = due(db, tenant.id)
    assert all(after[c].due == 0 for c in RetentionCategory)

    with tenant_session(db, tenant.id) as session:
        loans = set(session.scalars(text("SELECT id FROM loans")))
        searches = set(session.scalars(text("SELECT id FROM searches")))
        patrons = set(session.scalars(text("SELECT id FROM patrons")))
        assert count(session, "posts") == 1
        batches = (
            session.execute(text("SELECT details FROM audit_events WHERE action = 'retention.purged' ORDER BY seq"))
            .scalars()
            .all()
        )
    assert loans & set(aged["old_loans"]) == set() and {aged["new_loan"], aged["held_loan"]} <= loans
    assert searches & set(aged["old_searches"]) == set() and {aged["new_search"], aged["held_search"]} <= searches
    assert aged["gone"] not in patrons
    assert {aged["reader"], aged["held"], aged["borrower"], aged["searcher"]} <= patrons
    assert sum(b["count"] for b in batches if b["category"] == "searches") == 4
    assert max(b["count"] for b in batches) <= 2  # batches of the size asked
    assert sorted(str(i) for b in batches if b["category"] == "loan_history" for i in b["ids"]) == sorted(
        str(i) for i in aged["old_loans"]
    )


def test_held_data_stays_until_the_hold_is_lifted(db, tenant, aged):
    with tenant_session(db, tenant.id) as session:
        whole = holds.place(session, officer(tenant.id), reason="Regulator inquiry R-7", category=C.SEARCHES)
    retention.run_purge(db, tenant.id)
    with tenant_session(db, tenant.id) as session:
        assert count(session, "searches") == 7  # the whole category is held: every search stays
        assert session.get(library.Search, (tenant.id, aged["held_search"])) is not None
        assert session.get(library.Loan, (tenant.id, aged["held_loan"])) is not None
        holds.lift(session, officer(tenant.id), whole.id)
        (on_patron,) = holds.list_holds(session, officer(tenant.id))
        holds.lift(session, officer(tenant.id), on_patron.id)
        assert holds.active_hold(session, aged["held"]) is None
    retention.run_purge(db, tenant.id)
    with tenant_session(db, tenant.id) as session:
        assert session.get(library.Search, (tenant.id, aged["held_search"])) is None
        assert session.get(library.Loan, (tenant.id, aged["held_loan"])) is None
        assert count(session, "searches") == 2  # the searcher's recent one and the reader's new one


def test_a_hold_past_its_end_holds_nothing(db, tenant, aged):
    with tenant_session(db, tenant.id) as session:
        session.execute(
            text("UPDATE legal_holds SET placed_at = now() - interval '2 days', held_until = now() - interval '1 day'")
        )
        assert holds.active_hold(session, aged["held"]) is None
    assert due(db, tenant.id)[C.SEARCHES].due == 5


def test_a_removal_that_fails_is_counted_and_the_run_goes_on(db, tenant, aged, monkeypatch):
    real = retention._remove_patron

    def refuses(session, patron_id):
        if patron_id == aged["gone"]:
            raise Conflict("the patron has an open request")
        return real(session, patron_id)

    monkeypatch.setattr(retention, "_remove_patron", refuses)
    run_id = retention.run_purge(db, tenant.id)
    lines = report(db, tenant.id, run_id)
    assert lines[C.INACTIVE_PATRONS].errors == 1 and lines[C.INACTIVE_PATRONS].last_error == "conflict"
    assert lines[C.INACTIVE_PATRONS].removed == 0 and lines[C.SEARCHES].removed == 4
    with tenant_session(db, tenant.id) as session:
        assert session.get(RetentionRun, (tenant.id, run_id)).status == "completed"


def test_a_run_that_crashes_midway_resumes_and_removes_nothing_twice(committed_db, committed_tenant, monkeypatch):
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        reader = patron(session)
        old = [search(session, reader, days_ago=200) for _ in range(7)]
        search(session, reader, days_ago=1)
    real, calls = retention._record_batch, iter(range(100))

    def dies_on_the_second_batch(*args, **kwargs):
        if next(calls) == 1:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(retention, "_record_batch", dies_on_the_second_batch)
    with pytest.raises(RuntimeError, match="killed"):
        retention.run_purge(committed_db, tenant_id, batch=2)
    monkeypatch.setattr(retention, "_record_batch", real)
    with tenant_session(committed_db, tenant_id) as session:
        (run,) = session.scalars(select(RetentionRun)).all()
        assert run.status == "running"
        assert count(session, "searches") == 6  # the first batch committed, the second rolled back
        first_id = run.id

    assert retention.run_purge(committed_db, tenant_id, batch=2) == first_id  # resumed, not a new run
    lines = report(committed_db, tenant_id, first_id)
    assert lines[C.SEARCHES].removed == 7 and lines[C.SEARCHES].done
    with tenant_session(committed_db, tenant_id) as session:
        run = session.get(RetentionRun, (tenant_id, first_id))
        assert (run.status, run.resumed) == ("completed", 1)
        assert set(session.scalars(text("SELECT id FROM searches"))).isdisjoint(old)
        assert count(session, "searches") == 1

    again = retention.run_purge(committed_db, tenant_id)  # idempotent: nothing left to remove
    assert again != first_id and report(committed_db, tenant_id, again)[C.SEARCHES].removed == 0


def test_the_daily_purge_is_a_declared_recurring_job(db):
    assert retention_jobs in areas.modules("jobs")
    assert handler_for(retention.PURGE_JOB) is retention_jobs._purge_job


def test_run_reports_over_the_api(db, tenant, aged, client_for):
    run_id = retention.run_purge(db, tenant.id)
    client = client_for(tenant, permissions=OFFICER)
    runs = client.get("/api/v1/privacy/retention/runs")
    assert runs.status_code == 200 and runs.json()[0]["id"] == str(run_id)
    one = client.get(f"/api/v1/privacy/retention/runs/{run_id}").json()
    searches = next(line for line in one["categories"] if line["category"] == "searches")
    assert (searches["removed"], searches["held"], searches["errors"]) == (4, 1, 0)
    assert client.get(f"/api/v1/privacy/retention/runs/{uuid.uuid4()}").status_code == 404
    preview = client.get("/api/v1/privacy/retention/preview").json()
    assert {line["category"] for line in preview} == set(RetentionCategory)


# -- audit segments ----------------------------------------------------------------------------------


@pytest.fixture
def key() -> signing.SigningKey:
    return signing.SigningKey.from_seed(os.urandom(32))


def _old_trail(db, tenant_id, key, patron_id=None) -> None:
    """20 events from eight years ago (the 5th about `patron_id`), sealed; then 5 recent ones, sealed."""
    who = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset())
    with tenant_session(db, tenant_id) as session:
        for n in range(20):
            about = {"patron_id": patron_id} if n == 4 and patron_id else {}
            audit.record(session, Action.LOAN_CREATED, ("loan", uuid.uuid4()), actor=who, details=about)
        queued = session.info[audit.PENDING]
        eight_years = timedelta(days=8 * 365)
        session.info[audit.PENDING] = [dataclasses.replace(e, occurred_at=e.occurred_at - eight_years) for e in queued]
    with tenant_session(db, tenant_id) as session:
        checkpoints.make_checkpoint(session, key)
    with tenant_session(db, tenant_id) as session:
        for _ in range(5):
            audit.record(session, Action.LOAN_CREATED, ("loan", uuid.uuid4()), actor=who)
    with tenant_session(db, tenant_id) as session:
        checkpoints.make_checkpoint(session, key)


def _first_seq(db, tenant_id) -> int:
    with tenant_session(db, tenant_id) as session:
        return session.execute(text("SELECT min(seq) FROM audit_events")).scalar_one()


def test_audit_segments_go_at_the_institutions_own_period_never_under_the_platforms(
    committed_db, committed_tenant, key
):
    default, longer = committed_tenant(), committed_tenant()
    for tenant_id in (default, longer):
        _old_trail(committed_db, tenant_id, key)
    with tenant_session(committed_db, longer) as session:
        nine_years = retention.RetentionPolicy(
            tenant_id=longer, category="audit_segments", keep_days=9 * 365, changed_by=uuid.uuid4()
        )
        session.add(nine_years)
    assert due(committed_db, default)[C.AUDIT_SEGMENTS].due == 20
    assert due(committed_db, longer)[C.AUDIT_SEGMENTS].due == 0

    retention.drop_audit_segments(committed_db, timedelta(days=get_settings().audit_retention_days))  # the audit job
    assert _first_seq(committed_db, default) == 21 and _first_seq(committed_db, longer) == 1

    # A setting under the platform's minimum (made before the minimum rose) counts as the minimum.
    with tenant_session(committed_db, longer) as session:
        session.execute(text("UPDATE retention_policies SET keep_days = 1"))
    run_id = retention.run_purge(committed_db, longer)
    assert report(committed_db, longer, run_id)[C.AUDIT_SEGMENTS].removed == 20
    assert _first_seq(committed_db, longer) == 21


def test_a_hold_keeps_the_audit_events_about_its_patron(committed_db, committed_tenant, key):
    tenant_id, held = committed_tenant(), uuid.uuid4()
    _old_trail(committed_db, tenant_id, key, patron_id=held)  # the 5th old event is about `held`
    with tenant_session(committed_db, tenant_id) as session:
        # The patron the old events name (their row only: the hold needs no more).
        session.execute(
            text("INSERT INTO patrons (tenant_id, id, name, status) VALUES (:t, :id, :name, 'active')"),
            {"t": tenant_id, "id": held, "name": b"sealed"},
        )
        hold = holds.place(session, officer(tenant_id), reason="Litigation L-1", patron_id=held)
    assert due(committed_db, tenant_id)[C.AUDIT_SEGMENTS].due == 0

    run_id = retention.run_purge(committed_db, tenant_id)
    line = report(committed_db, tenant_id, run_id)[C.AUDIT_SEGMENTS]
    assert (line.removed, line.held) == (0, 20) and _first_seq(committed_db, tenant_id) == 1

    with tenant_session(committed_db, tenant_id) as session:
        holds.lift(session, officer(tenant_id), hold.id)
    run_id = retention.run_purge(committed_db, tenant_id)
    assert report(committed_db, tenant_id, run_id)[C.AUDIT_SEGMENTS].removed == 20
    assert _first_seq(committed_db, tenant_id) == 21


def test_old_export_approvals_and_access_packages_go_with_their_keys(db, tenant):
    from bookwarden.access.approvals import service as approvals
    from bookwarden.access.approvals.models import SensitiveAction
    from bookwarden.crypto.keyring import KeyDestroyed
    from bookwarden.privacy.subjects import export as subject_export

    exporter = [
        Principal(
            PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, {Permission.PATRONS_EXPORT, Permission.ACCOUNTS_READ}
        )
        for _ in "ab"
    ]
    with tenant_session(db, tenant.id) as session:
        reader = patron(session)
        old, pending, recent = (
            approvals.ask(session, exporter[0], SensitiveAction.EXPORT_PATRONS, {"format": "csv"}) for _ in range(3)
        )
        approvals.approve(session, exporter[1], old.id)
        session.execute(
            text("UPDATE approval_requests SET requested_at = now() - interval '40 days' WHERE id IN (:a, :b)"),
            {"a": old.id, "b": pending.id},
        )
        package = subject_export.build_package(session, reader)
        session.execute(
            text("UPDATE subject_export_packages SET created_at = now() - interval '40 days' WHERE id = :id"),
            {"id": package.id},
        )
    assert due(db, tenant.id)[C.EXPORTS].due == 2  # the decided approval and the package; not the pending one
    run_id = retention.run_purge(db, tenant.id)
    assert report(db, tenant.id, run_id)[C.EXPORTS].removed == 2
    with tenant_session(db, tenant.id) as session:
        left = set(session.scalars(text("SELECT id FROM approval_requests")))
        assert left == {pending.id, recent.id}
        assert count(session, "subject_export_packages") == 0 and count(session, "subject_export_chunks") == 0
        with pytest.raises(KeyDestroyed):
            session.keyring.subject_key(tenant.id, package.id)


def test_the_daily_job_purges_every_institution(db, make_tenant):
    first, second = make_tenant(), make_tenant()
    for institution in (first, second):
        with tenant_session(db, institution.id) as session:
            search(session, patron(session), days_ago=200)
    handler_for(retention.PURGE_JOB)(db, {})
    for institution in (first, second):
        with tenant_session(db, institution.id) as session:
            assert count(session, "searches") == 0
            assert session.scalars(select(RetentionRun.status)).all() == ["completed"]


def test_the_records_of_processing_state_the_institutions_own_periods(db, tenant):
    import json

    from bookwarden.access.approvals import service as approvals
    from bookwarden.access.approvals.models import SensitiveAction
    from bookwarden.privacy.records import service as records

    with tenant_session(db, tenant.id) as session:
        asked = retention.ask_change(session, officer(tenant.id), C.LOAN_HISTORY, 60)
        approvals.approve(session, officer(tenant.id), asked.id)
        params = {"category": "inactive_patrons", "keep_days": 400}
        asked = approvals.ask(session, officer(tenant.id), SensitiveAction.CHANGE_RETENTION_POLICY, params)
        approvals.approve(session, officer(tenant.id), asked.id)
        reader = acting(tenant.id, Permission.PRIVACY_RECORDS_READ)
        exported = json.loads(records.export(session, reader, records.RecordsFormat.JSON))
    found = {activity["category"]: activity for activity in exported["activities"]}
    loans, contact, searches = found["circulation_history"], found["contact"], found["search_history"]
    assert loans["keep_days"] == 60
    assert loans["retention"] == "60 days after the item is returned (the institution's own period)"
    assert contact["keep_days"] == 400 and "erased after 400 days without any activity" in contact["retention"]
    assert searches["keep_days"] == 90 and "institution" not in searches["retention"]  # the registry's default


def test_the_console_previews_runs_and_reports(cli_env, committed_db, committed_tenant, monkeypatch):  # noqa: F811
    from rich.console import Console
    from typer.testing import CliRunner

    from bookwarden import cli
    from bookwarden.privacy.retention import cli as retention_cli

    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        reader = patron(session)
        for _ in range(3):
            search(session, reader, days_ago=100)

    def run(*args: str) -> list[list[str]]:
        monkeypatch.setattr(retention_cli, "out", Console(width=300, color_system=None))
        result = CliRunner().invoke(cli.app, granted(committed_db, args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]

    def searches_line(rows: list[list[str]]) -> list[str]:
        return next(row for row in rows if str(tenant_id) in row and "searches" in row)

    preview = run("retention", "preview", "--tenant", str(tenant_id))
    assert searches_line(preview)[4:6] == ["3", "0"]  # due, held
    run("retention", "run", "--tenant", str(tenant_id))
    (line,) = [row for row in run("retention", "runs", "--tenant", str(tenant_id)) if "searches" in row]
    assert line[1] == "completed" and line[4:] == ["3", "0", "0"]  # removed, held, errors
    assert searches_line(run("retention", "preview", "--tenant", str(tenant_id)))[4] == "0"
