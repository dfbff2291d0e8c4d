"""Anonymized publisher reports: the catalogue, k-suppression that subtraction cannot undo, OpenDP noise
paid for from each publisher's budget, every release recorded and audited; API and console."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from bookwarden.core.classification import Classification
from bookwarden.core.errors import Conflict, InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.library.models import Loan, Patron
from bookwarden.privacy.registry import registry
from bookwarden.privacy.reports import catalogue
from bookwarden.privacy.reports import noise as report_noise
from bookwarden.privacy.reports import service as publisher_reports
from bookwarden.privacy.reports.models import CatalogueItem, PublisherBudget, PublisherReport
from bookwarden.privacy.reports.service import Cell, bounded_counts, publishable, true_cells
from tests.e2e.test_cli import cli_env, granted  # noqa: F401 - the command line pointed at the test database

REPORTS = "/api/v1/reports"
OFFICER = BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
CATALOGUER = {Permission.REPORTS_CATALOGUE_MANAGE, Permission.REPORTS_PUBLISHERS}
CATALOGUE_CSV = (
    "item_id,title,publisher\r\n"
    "b-1,Middlemarch,Penguin\r\n"
    "b-2,Beloved,Vintage\r\n"
    "b-3,Persuasion,Penguin\r\n"
    "b-4,Middlemarch,Penguin\r\n"  # a second copy: counted under the same title
    '"b-5","Emma, Annotated",Penguin\r\n'
)


_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f")
_TEXT = st.text(_PRINTABLE, min_size=1, max_size=30).filter(str.strip)


@st.composite
def catalogue_files(draw) -> str:
    """Valid catalogue files (any item ids, titles with commas and quotes): what the upload accepts."""
    ids = draw(st.lists(_TEXT.map(str.strip), min_size=1, max_size=8, unique=True))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["item_id", "title", "publisher"])
    for item_id in ids:
        writer.writerow([item_id, draw(_TEXT), draw(_TEXT)])
    return buffer.getvalue()


@settings(max_examples=50, deadline=None)
@given(content=catalogue_files())
def test_every_file_the_generator_makes_parses_as_written(content):
    rows = list(csv.reader(io.StringIO(content)))[1:]
    assert [(e.item_id, e.title, e.publisher) for e in catalogue.parse(content)] == [
        tuple(v.strip() for v in row) for row in rows
    ]


def _as(session) -> Principal:
    """Someone of the session's institution holding every permission."""
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), session.tenant_id, frozenset(Permission))


def _lend(session, loans) -> dict[int, uuid.UUID]:
    """Loans as (patron number, item id, day): patrons made as bare rows. A report reads only the
    patron id, the item id and the time of a loan, never a sealed field, so none is sealed here."""
    patrons: dict[int, uuid.UUID] = {}
    for number, _, _ in loans:
        patrons.setdefault(number, uuid.uuid4())
    session.execute(insert(Patron), [{"tenant_id": session.tenant_id, "id": p, "name": b"-"} for p in patrons.values()])
    session.execute(
        insert(Loan),
        [
            {
                "tenant_id": session.tenant_id,
                "id": uuid.uuid4(),
                "patron_id": patrons[number],
                "item_id": item,
                "borrowed_at": datetime.combine(day, datetime.min.time(), UTC),
                "due_at": datetime.combine(day, datetime.min.time(), UTC),
            }
            for number, item, day in loans
        ],
    )
    return patrons


def _load(session, content: str = CATALOGUE_CSV):
    return catalogue.load(session, _as(session), content)


def _events(session, action: str) -> list:
    return session.execute(
        text("SELECT target_id, details FROM audit_events WHERE action = :a ORDER BY seq"), {"a": action}
    ).all()


JAN, FEB = date(2026, 1, 10), date(2026, 2, 10)


# -- the catalogue ----------------------------------------------------------------------------------


def test_the_catalogue_is_not_personal_data_and_says_so():
    entry = registry().tables["catalogue_items"]
    assert {c.name: c.classification for c in entry.columns} == {
        "tenant_id": Classification.NOT_PERSONAL,
        "item_id": Classification.NOT_PERSONAL,
        "title": Classification.NOT_PERSONAL,
        "publisher": Classification.NOT_PERSONAL,
        "updated_at": Classification.NOT_PERSONAL,
    }
    assert not registry().tables["publisher_reports"].personal_columns


def test_a_csv_upload_adds_then_updates_and_is_audited(client_for, tenant, in_tenant):
    client = client_for(tenant, permissions=CATALOGUER)

    first = client.post(f"{REPORTS}/catalogue", content=CATALOGUE_CSV.encode())
    again = client.post(
        f"{REPORTS}/catalogue",
        # A byte-order mark, as spreadsheets write it; one line changed, one the same, one new.
        content=b"\xef\xbb\xbfitem_id,title,publisher\nb-1,Middlemarch,Penguin Classics\nb-2,Beloved,Vintage\n"
        b"b-6,Ulysses,Bodley\n",
    )

    assert first.status_code == 200, first.text
    assert first.json() == {"items": 5, "added": 5, "changed": 0, "unchanged": 0, "removed": 0}
    assert again.json() == {"items": 3, "added": 1, "changed": 1, "unchanged": 1, "removed": 0}
    listed = client.get(f"{REPORTS}/catalogue", params={"publisher": "Penguin"}).json()["items"]
    assert [(i["item_id"], i["title"]) for i in listed] == [
        ("b-3", "Persuasion"),
        ("b-4", "Middlemarch"),
        ("b-5", "Emma, Annotated"),
    ]
    with in_tenant(tenant) as session:
        imported = [details for _, details in _events(session, "catalogue.imported")]
    assert [(d["added"], d["changed"], d["unchanged"]) for d in imported] == [(5, 0, 0), (1, 1, 1)]


def test_replace_removes_what_the_file_no_longer_lists(tenant, in_tenant):
    with in_tenant(tenant) as session:
        _load(session)
        summary = catalogue.load(session, _as(session), "item_id,title,publisher\nb-2,Beloved,Vintage\n", replace=True)
        assert (summary.unchanged, summary.removed) == (1, 4)
        assert session.scalars(select(CatalogueItem.item_id)).all() == ["b-2"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"item_id,title,publisher\nb-1,Middlemarch,Penguin\nb-2,,Vintage\n", "line 3: title is blank"),
        (b"item_id,title,publisher\nb-1,Middlemarch,Penguin\nb-1,Emma,Penguin\n", "already on line 2"),
        (b"item_id,title,publisher\nb-1,Middlemarch\n", "2 columns, expected 3"),
        (b"id,name\nb-1,Middlemarch\n", "the first line must be the header"),
        (b"item_id,title,publisher\nb-1,Middle\xffmarch,Penguin\n", "not UTF-8"),
        (b"item_id,title,publisher\nb-1,Middle\x00march,Penguin\n", "control character"),
        (b"item_id,title,publisher\n" + b"x" * 65 + b",Title,Penguin\n", "item_id is longer than 64"),
        (b"item_id,title,publisher\n", "lists no items"),
        (b"", "the first line must be the header"),
    ],
)
def test_a_bad_file_is_refused_whole_and_writes_nothing(client_for, tenant, in_tenant, content, problem):
    client = client_for(tenant, permissions=CATALOGUER)
    assert client.post(f"{REPORTS}/catalogue", content=b"item_id,title,publisher\nb-9,Kept,Penguin\n").is_success

    response = client.post(f"{REPORTS}/catalogue", content=content, params={"replace": True})

    assert response.status_code == 422, response.text
    assert problem in response.json()["detail"]
    with in_tenant(tenant) as session:
        assert session.execute(select(CatalogueItem.item_id, CatalogueItem.title)).all() == [("b-9", "Kept")]
        assert len(_events(session, "catalogue.imported")) == 1


def test_every_bad_line_is_named_at_once(tenant, in_tenant):
    lines = ["item_id,title,publisher", "ok,Fine,P"] + [f"b-{n},,P" for n in range(12)]
    with pytest.raises(InvalidInput) as refused:
        catalogue.parse("\n".join(lines))
    assert refused.value.detail.startswith("12 bad line(s), nothing loaded: line 3: title is blank")
    assert refused.value.detail.endswith("(and 2 more)")


# -- k, suppression ---------------------------------------------------------------------------------


def _twelve_and_nine(session) -> dict[int, uuid.UUID]:
    """Middlemarch: 12 patrons in January (one of them twice); Persuasion: 9; Beloved (another publisher): 30."""
    loans = [(n, "b-1" if n % 2 else "b-4", JAN) for n in range(12)] + [(0, "b-1", JAN)]
    loans += [(100 + n, "b-3", JAN) for n in range(9)]
    loans += [(200 + n, "b-2", JAN) for n in range(30)]
    return _lend(session, loans)


def test_a_cell_under_k_patrons_is_not_published_and_the_total_covers_published_cells_only(tenant, in_tenant):
    with in_tenant(tenant) as session:
        _load(session)
        patrons = _twelve_and_nine(session)
        report = publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01")
        body = report.body

    assert body["cells"] == [{"title": "Middlemarch", "month": "2026-01", "loans": 13, "patrons": 12}]
    # 13 + 9 = 22 loans of Penguin titles happened; the total says 13: Persuasion's 9 cannot be had by subtraction.
    assert body["month_totals"] == [{"month": "2026-01", "loans": 13, "titles": 1}]
    assert "patrons" not in body["month_totals"][0]
    assert (report.k, report.cells_published, report.cells_suppressed, report.epsilon) == (10, 1, 1, None)
    assert "Persuasion" not in json.dumps(body)
    assert not any(str(p) in json.dumps(body) for p in patrons.values())


def test_the_institution_may_raise_k_never_lower_it(client_for, tenant, in_tenant):
    client = client_for(tenant, permissions=OFFICER)
    assert client.put(f"{REPORTS}/policy", json={"k": 9}).status_code == 422
    raised = client.put(f"{REPORTS}/policy", json={"k": 13})
    assert raised.status_code == 200 and raised.json()["k"] == 13
    with in_tenant(tenant) as session:
        _load(session)
        _twelve_and_nine(session)
        report = publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01")
        assert report.body["cells"] == [] and report.body["month_totals"] == []
        with pytest.raises(InvalidInput, match="between 10 and"):
            publisher_reports.set_policy(session, _as(session), k=5)
    # And the database refuses it from anywhere else.
    with pytest.raises(IntegrityError, match="k_at_least_floor"), in_tenant(tenant) as session:
        session.execute(text("UPDATE publisher_report_policies SET k = 9"))


@settings(max_examples=300, deadline=None)
@given(
    loans=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["A", "B", "C", "D"]), st.integers(1, 3), st.integers(1, 4)),
        max_size=300,
    ),
    k=st.integers(10, 20),
)
def test_no_published_cell_rests_on_fewer_than_k_patrons(loans, k):
    rows_by_key: dict[tuple, int] = {}
    patrons = [uuid.UUID(int=n) for n in range(41)]
    for patron, title, month, count in loans:
        key = (title, date(2026, month, 1), patrons[patron])
        rows_by_key[key] = rows_by_key.get(key, 0) + count
    rows = [(t, m, p, c) for (t, m, p), c in rows_by_key.items()]

    published = publishable(true_cells(rows), k)

    for cell in published:
        described = {p for t, m, p, _ in rows if (t, m) == (cell.title, cell.month)}
        assert cell.patrons == len(described) >= k
        assert cell.loans == sum(c for t, m, _, c in rows if (t, m) == (cell.title, cell.month))
    everything = {(t, m) for t, m, _, _ in rows}
    suppressed = everything - {(c.title, c.month) for c in published}
    for title, month in suppressed:
        assert len({p for t, m, p, _ in rows if (t, m) == (title, month)}) < k


@pytest.mark.parametrize("seed", range(3))
def test_a_release_over_random_loans_publishes_only_cells_of_k_patrons_or_more(tenant, in_tenant, seed):
    chance = random.Random(seed)
    titles = {f"t-{n}": f"Title {n}" for n in range(8)}
    lines = ["item_id,title,publisher", *(f"{item},{title},Penguin" for item, title in titles.items())]
    loans = [
        (chance.randrange(60), chance.choice(list(titles)), date(2026, chance.randint(1, 4), chance.randint(1, 28)))
        for _ in range(chance.randint(50, 400))
    ]
    with in_tenant(tenant) as session:
        _load(session, "\n".join(lines))
        _lend(session, loans)
        body = publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-04").body

    for cell in body["cells"]:
        month = int(cell["month"][5:])
        mine = [(p, i) for p, i, d in loans if titles[i] == cell["title"] and d.month == month]
        assert cell["patrons"] == len({p for p, _ in mine}) >= 10
        assert cell["loans"] == len(mine)
    for total in body["month_totals"]:
        cells = [c for c in body["cells"] if c["month"] == total["month"]]
        assert total["loans"] == sum(c["loans"] for c in cells) and total["titles"] == len(cells)


def test_an_open_month_a_bad_range_or_an_unknown_publisher_is_refused(tenant, in_tenant):
    with in_tenant(tenant) as session:
        _load(session)
        today = session.execute(text("SELECT now() AT TIME ZONE 'UTC'")).scalar_one()
        with pytest.raises(Conflict, match="must have ended"):
            publisher_reports.release(session, _as(session), "Penguin", "2026-01", f"{today:%Y-%m}")
        with pytest.raises(InvalidInput, match="after last_month"):
            publisher_reports.release(session, _as(session), "Penguin", "2026-03", "2026-01")
        with pytest.raises(InvalidInput, match="at most 36 months"):
            publisher_reports.release(session, _as(session), "Penguin", "2020-01", "2023-01")
        with pytest.raises(Conflict, match="only with noise on"):
            publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01", epsilon=0.5)
        from bookwarden.core.errors import NotFound

        with pytest.raises(NotFound):
            publisher_reports.release(session, _as(session), "Nobody Press", "2026-01", "2026-01")
        assert session.scalars(select(PublisherReport)).all() == []


# -- noise and the budget ---------------------------------------------------------------------------


def _many_cells(session) -> None:
    """40 titles of Penguin, each borrowed by 15 patrons in January: 40 published cells."""
    lines = ["item_id,title,publisher", *(f"p-{n},Title {n:02d},Penguin" for n in range(40))]
    _load(session, "\n".join(lines))
    _lend(session, [(n * 100 + p, f"p-{n}", JAN) for n in range(40) for p in range(15)])


def _with_noise(session, **rules) -> None:
    publisher_reports.set_policy(session, _as(session), noise=True, **rules)


def test_noise_is_present_and_the_epsilon_recorded_is_the_mechanisms_own(tenant, in_tenant):
    with in_tenant(tenant) as session:
        _many_cells(session)
        exact = publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01").body["cells"]
        _with_noise(session, epsilon_per_report=1.0, max_cells_per_patron=2, max_loans_per_cell=1)
        report = publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01")
        budget = session.scalars(select(PublisherBudget)).one()

    # Rebuilt from what was recorded, OpenDP's own privacy map gives back exactly the epsilon recorded and spent.
    assert report.sensitivity == report_noise.sensitivity(2, 1) == 4
    assert report_noise.measurement(report.noise_scale).map(report.sensitivity) == report.epsilon == 1.0
    assert report.noise_scale == 4.0 and report.mechanism == "discrete_laplace"
    assert budget.spent == report.epsilon and budget.budget == 10.0
    assert report.body["noise"]["epsilon"] == report.epsilon
    # Discrete Laplace at scale 4 leaves a count unchanged with probability tanh(1/8) < 0.125: all 80
    # unchanged would happen less than once in 10^72 runs.
    noisy = report.body["cells"]
    assert [c["title"] for c in noisy] == [c["title"] for c in exact] and len(noisy) == 40
    assert [(c["patrons"], c["loans"]) for c in noisy] != [(c["patrons"], c["loans"]) for c in exact]
    changed = sum((a["patrons"], a["loans"]) != (b["patrons"], b["loans"]) for a, b in zip(noisy, exact, strict=True))
    assert changed >= 10  # a cell keeps both counts with probability < 0.016: fewer than 10 of 40 changed is < 10^-40
    assert all(c["patrons"] >= 0 and c["loans"] >= 0 for c in noisy)


def test_a_report_the_budget_cannot_pay_for_is_refused_before_anything_is_released(tenant, in_tenant):
    with in_tenant(tenant) as session:
        _many_cells(session)
        _with_noise(session, epsilon_per_report=1.0)
        publisher_reports.set_budget(session, _as(session), "Penguin", 2.5)
        for _ in range(2):
            publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01")
        with pytest.raises(Conflict, match="cannot pay for this report"):
            publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01")
        # What is left still buys a smaller one.
        last = publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01", epsilon=0.5)
        budget = session.scalars(select(PublisherBudget)).one()
        with pytest.raises(Conflict, match="already received"):
            publisher_reports.set_budget(session, _as(session), "Penguin", 2.0)
        releases = session.scalars(select(PublisherReport)).all()
    with in_tenant(tenant) as session:  # the events are appended when the transaction commits
        released = _events(session, "publisher_report.released")

    assert (budget.spent, budget.budget) == (2.5, 2.5) and last.epsilon == 0.5
    assert sorted(r.epsilon for r in releases) == [0.5, 1.0, 1.0]
    assert [d["epsilon"] for _, d in released] == ["1.0", "1.0", "0.5"]


def test_a_release_that_fails_after_the_debit_spends_nothing(tenant, in_tenant, monkeypatch):
    with in_tenant(tenant) as session:
        _many_cells(session)
        _with_noise(session, epsilon_per_report=1.0)

    def broken(*args):
        raise RuntimeError("the disk filled up while the report was written")

    monkeypatch.setattr(publisher_reports, "_body", broken)
    with pytest.raises(RuntimeError), in_tenant(tenant) as session:
        publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01")
    with in_tenant(tenant) as session:
        # The debit and the release are one transaction: neither is left.
        assert session.scalars(select(PublisherBudget.spent)).all() in ([], [0.0])
        assert session.scalars(select(PublisherReport)).all() == []


def test_the_database_refuses_an_overdraft_whatever_the_code(tenant, in_tenant):
    with in_tenant(tenant) as session:
        _many_cells(session)
        publisher_reports.set_budget(session, _as(session), "Penguin", 1.0)
    with pytest.raises(IntegrityError, match="spent_within_budget"), in_tenant(tenant) as session:
        session.execute(text("UPDATE publisher_budgets SET spent = 1.5"))


def test_two_releases_at_once_cannot_both_spend_the_last_of_a_budget(committed_db, committed_tenant):
    import threading

    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        _many_cells(session)
        _with_noise(session, epsilon_per_report=1.0)
        publisher_reports.set_budget(session, _as(session), "Penguin", 1.5)
    outcomes, start = [], threading.Barrier(2)

    def release():
        start.wait()
        try:
            with tenant_session(committed_db, tenant_id) as session:
                publisher_reports.release(session, _as(session), "Penguin", "2026-01", "2026-01")
            outcomes.append("released")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=release) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "released"]
    with tenant_session(committed_db, tenant_id) as session:
        assert session.scalars(select(PublisherBudget.spent)).one() == 1.0
        assert len(session.scalars(select(PublisherReport)).all()) == 1


@settings(max_examples=200, deadline=None)
@given(
    loans=st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(["A", "B", "C"]), st.integers(1, 4), st.integers(1, 6)),
        min_size=1,
        max_size=120,
    ),
    max_cells=st.integers(1, 5),
    max_loans=st.integers(1, 4),
)
def test_one_patron_moves_the_noised_vector_by_at_most_the_sensitivity(loans, max_cells, max_loans):
    """The epsilon OpenDP's map gives holds only if one patron's presence moves the vector by at most d_in."""
    merged: dict[tuple, int] = {}
    for patron, title, month, count in loans:
        key = (title, date(2026, month, 1), uuid.UUID(int=patron))
        merged[key] = merged.get(key, 0) + count
    rows = [(t, m, p, c) for (t, m, p), c in merged.items()]
    cells = true_cells(rows)
    gone = rows[0][2]
    without = [row for row in rows if row[2] != gone]

    moved = sum(
        abs(a - b)
        for a, b in zip(
            bounded_counts(rows, cells, max_cells, max_loans),
            bounded_counts(without, cells, max_cells, max_loans),
            strict=True,
        )
    )

    assert moved <= report_noise.sensitivity(max_cells, max_loans)


def test_bounding_counts_each_patron_in_at_most_max_cells_with_at_most_max_loans():
    one, two = uuid.UUID(int=1), uuid.UUID(int=2)
    jan, feb = date(2026, 1, 1), date(2026, 2, 1)
    rows = [("A", jan, one, 5), ("B", jan, one, 1), ("A", feb, one, 1), ("A", jan, two, 1)]
    cells = [Cell("A", jan, 6, 2), Cell("B", jan, 1, 1), Cell("A", feb, 1, 1)]
    # Patron one keeps their two earliest cells (January: A then B), two loans at most in each.
    assert bounded_counts(rows, cells, max_cells=2, max_loans=2) == [2, 1, 0, 3, 1, 0]


# -- the API and the console ------------------------------------------------------------------------


def test_the_api_releases_json_or_csv_and_reads_a_release_again_unchanged(client_for, tenant, in_tenant, other_tenant):
    client = client_for(tenant, permissions=OFFICER)
    with in_tenant(tenant) as session:
        _load(session, CATALOGUE_CSV.replace("Persuasion", '=HYPERLINK("https://evil.example")'))
        _lend(session, [(n, "b-3", FEB) for n in range(10)] + [(n, "b-1", FEB) for n in range(11)])
    assert client.put(f"{REPORTS}/policy", json={"noise": True, "epsilon_per_report": 0.5}).status_code == 200
    ask = {"publisher": "Penguin", "first_month": "2026-02"}

    released = client.post(f"{REPORTS}/publishers", json=ask)
    as_csv = client.post(f"{REPORTS}/publishers", json={**ask, "epsilon": 0.25}, params={"format": "csv"})

    assert released.status_code == 201, released.text
    body = released.json()
    assert body["noise"]["epsilon"] == 0.5 and body["k"] == 10 and len(body["cells"]) == 2
    again = client.get(f"{REPORTS}/publishers/{body['report_id']}")
    assert again.json() == body  # the same numbers: a second read spends nothing
    assert as_csv.status_code == 201 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["row"] for r in rows] == ["title", "title", "month_total"]
    assert {r["title"] for r in rows} == {"", "Middlemarch", '\'=HYPERLINK("https://evil.example")'}
    assert {r["epsilon"] for r in rows} == {"0.25"}
    budgets = client.get(f"{REPORTS}/budgets").json()["items"]
    assert budgets == [{"publisher": "Penguin", "budget": 10.0, "spent": 0.75, "remaining": 9.25}]
    listed = client.get(f"{REPORTS}/publishers").json()["items"]
    assert sorted(r["epsilon"] for r in listed) == [0.25, 0.5]
    assert (
        client_for(other_tenant, permissions=OFFICER).get(f"{REPORTS}/publishers/{body['report_id']}").status_code
        == 404
    )
    with in_tenant(tenant) as session:
        [(target, details)] = _events(session, "publisher_report.released")[:1]
    assert str(target) == body["report_id"]
    assert details["publisher"] == "Penguin" and details["months"] == ["2026-02", "2026-02"] and details["k"] == 10


def test_the_budget_refusal_is_a_409_over_the_api(client_for, tenant, in_tenant):
    client = client_for(tenant, permissions=OFFICER)
    with in_tenant(tenant) as session:
        _load(session)
    client.put(f"{REPORTS}/policy", json={"noise": True})
    assert client.put(f"{REPORTS}/budgets", json={"publisher": "Penguin", "budget": 0.5}).status_code == 200
    response = client.post(f"{REPORTS}/publishers", json={"publisher": "Penguin", "first_month": "2026-01"})
    assert response.status_code == 409 and "nothing was released" in response.json()["detail"]
    assert client.get(f"{REPORTS}/publishers").json()["items"] == []


@pytest.mark.parametrize(
    ("permissions", "allowed"),
    [
        (BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER], {"release", "policy"}),
        (BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN], {"catalogue"}),
        (BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF], set()),
    ],
)
def test_who_may_do_what(client_for, tenant, permissions, allowed):
    client = client_for(tenant, permissions=permissions)
    calls = {
        "release": client.get(f"{REPORTS}/publishers"),
        "policy": client.put(f"{REPORTS}/policy", json={"k": 12}),
        "catalogue": client.post(f"{REPORTS}/catalogue", content=CATALOGUE_CSV.encode()),
    }
    assert {name for name, response in calls.items() if response.status_code != 403} == allowed


def test_the_console_loads_sets_releases_and_lists(cli_env, committed_tenant, committed_db, tmp_path):  # noqa: F811
    from bookwarden.cli import app

    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        _lend(session, [(n, "b-1", JAN) for n in range(10)])
    file = tmp_path / "catalogue.csv"
    file.write_text(CATALOGUE_CSV)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, granted(committed_db, ["reports", *args, "--tenant", str(tenant_id)]))
        assert result.exit_code == 0, result.output
        return result.stdout

    run("catalogue-import", str(file))
    assert json.loads(run("policy", "--noise", "--epsilon-per-report", "0.5"))["noise"] is True
    run("budget", "--publisher", "Penguin", "--budget", "3")
    body = json.loads(run("publishers", "--publisher", "Penguin", "--from", "2026-01", "--to", "2026-01"))
    rows = list(csv.DictReader(io.StringIO(run("publishers", "--publisher", "Penguin", "--from", "2026-01",
                                               "--to", "2026-01", "--format", "csv"))))  # fmt: skip
    listing = json.loads(run("list", "--format", "json"))
    budgets = run("budget")

    assert body["noise"]["epsilon"] == 0.5 and [c["title"] for c in body["cells"]] == ["Middlemarch"]
    assert rows[0]["title"] == "Middlemarch"
    assert body["report_id"] in {r["id"] for r in listing} and {r["epsilon"] for r in listing} == {0.5}
    assert "Penguin" in budgets and "2" in budgets  # 3 - 0.5 - 0.5
    refused = runner.invoke(app, granted(committed_db, ["reports", "policy", "--tenant", str(tenant_id), "--k", "3"]))
    assert refused.exit_code != 0
    with tenant_session(committed_db, tenant_id) as session:
        actions = session.execute(text("SELECT action FROM audit_events ORDER BY seq")).scalars().all()
    assert {
        "catalogue.imported",
        "publisher_report.policy_changed",
        "publisher_report.budget_changed",
        "publisher_report.released",
        "publisher_report.listed",
        "publisher_report.budget_listed",
    } <= set(actions)
