"""Anonymized usage reports for publishers: loans by title and month, over at least k patrons per cell.

A report covers one publisher and a run of whole calendar months (UTC) that have ended. Each cell
is a (title, month): the number of loans and of distinct patrons, from the loans joined to the
catalogue on the item id. What protects the patrons:

- **k, suppression.** A cell describing fewer than k distinct patrons is not published at all,
  not even as "fewer than k". k is 10 unless the institution raises it; never lower (MIN_K, also a
  CHECK in the database): 10 is the usual floor of small-cell rules in official statistics, and
  a loan history is sensitive enough that the floor is not the institution's to lower.
- **No undoing by subtraction.** Each month's total is the sum of that month's *published*
  cells only, never a total over the publisher's whole catalogue: a total over everything minus
  the published cells would hand back a suppressed cell. For the same reason no total of distinct
  patrons is released: patron counts do not add up (a patron may borrow two titles), and the
  distinct patrons of titles A and B together, next to A's and B's own counts, give the patrons
  who borrowed both, a cell that may describe fewer than k people.
- **Closed months only.** The current month's counts change every day; two reports of it a day
  apart would differ by the few patrons in between.
- **Noise, when the institution chooses.** Published counts get discrete Laplace noise from
  OpenDP (report_noise.py), each patron's part in the report bounded first. The epsilon each
  release spends is debited from the publisher's budget in the transaction that records the
  release; a release the budget cannot pay for is refused (409) before anything is computed
  from the noise, and the budget row is locked by the debit, so two releases at once cannot both
  spend the last of it. The noise covers the published numbers. Which cells are published is
  decided on the true counts (the k rule is a promise about true counts): that choice is
  protected by k and by the closed months, not by epsilon.
- **Objections.** A release names a purpose (usage_statistics unless said) and asks the sharing
  gate (privacy/consent/gate.py) first: the loans of patrons who object to disclosure to third
  parties or to that purpose, or whose processing is restricted, are counted in no cell. Direct
  marketing is refused as a purpose before anything is computed or spent.

Every release is recorded (publisher_reports: what was asked, k, epsilon, scale, and the exact
body sent) and audited as publisher_report.released; reading a release again returns the same
numbers and spends nothing. No report names or counts a patron id.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, Date, String, any_, bindparam, cast, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.csv_safety import spreadsheet_safe
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import SharingPath, checked_purpose
from bookwarden.db.session import TenantSession
from bookwarden.library.models import Loan
from bookwarden.privacy.consent.gate import check_sharing
from bookwarden.privacy.reports import noise as report_noise
from bookwarden.privacy.reports.catalogue import has_publisher
from bookwarden.privacy.reports.models import (
    MIN_K,
    CatalogueItem,
    PublisherBudget,
    PublisherReport,
    PublisherReportPolicy,
)

TARGET = "publisher_report"
MAX_MONTHS = 36
MAX_K = 1_000
MAX_EPSILON = 10.0  # per report
MAX_BUDGET = 100.0  # per publisher
MAX_BOUND = 100  # cells per patron, loans per cell
LIST_LIMIT = 500
DEFAULT_PURPOSE = "usage_statistics"


class ReportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"


MEDIA_TYPES = {ReportFormat.JSON: "application/json", ReportFormat.CSV: "text/csv"}


@dataclass(frozen=True)
class Policy:
    k: int = MIN_K
    noise: bool = False
    epsilon_per_report: float = 1.0
    publisher_budget: float = 10.0
    max_cells_per_patron: int = 3
    max_loans_per_cell: int = 2

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


DEFAULT_POLICY = Policy()


# -- the institution's rules -------------------------------------------------------------------


def current_policy(session: TenantSession) -> Policy:
    row = session.get(PublisherReportPolicy, session.tenant_id)
    if row is None:
        return DEFAULT_POLICY
    return Policy(**{name: getattr(row, name) for name in DEFAULT_POLICY.__dict__})


def read_policy(session: TenantSession, actor: Principal) -> Policy:
    authorize(actor, Permission.REPORTS_PUBLISHERS)
    policy = current_policy(session)
    audit.record(session, Action.PUBLISHER_REPORT_POLICY_VIEWED, ("publisher_report_policy", None), actor=actor)
    return policy


def set_policy(session: TenantSession, actor: Principal, **changes: Any) -> Policy:
    """Change some of the rules (the others stay); k below MIN_K is refused."""
    authorize(actor, Permission.REPORTS_POLICY_MANAGE)
    changes = {name: value for name, value in changes.items() if value is not None}
    unknown = set(changes) - set(DEFAULT_POLICY.__dict__)
    if unknown:
        raise InvalidInput(f"no such rule: {', '.join(sorted(unknown))}")
    # Locked while read and rewritten: two changes of different rules at once both take effect.
    session.execute(select(PublisherReportPolicy.tenant_id).with_for_update())
    before = current_policy(session)
    policy = replace(before, **changes)
    _check_policy(policy)
    # One statement whether or not the row exists yet: two first changes at once cannot both insert it.
    values = {**policy.as_dict(), "updated_by": actor.id, "updated_at": func.now()}
    session.execute(
        insert(PublisherReportPolicy)
        .values(tenant_id=session.tenant_id, **values)
        .on_conflict_do_update(index_elements=[PublisherReportPolicy.tenant_id], set_=values)
    )
    changed = sorted(name for name in changes if getattr(before, name) != getattr(policy, name))
    audit.record(
        session,
        Action.PUBLISHER_REPORT_POLICY_CHANGED,
        ("publisher_report_policy", None),
        details={"fields": changed, **{name: _detail(getattr(policy, name)) for name in changed}},
        actor=actor,
    )
    return policy


def _check_policy(policy: Policy) -> None:
    if not MIN_K <= policy.k <= MAX_K:
        raise InvalidInput(f"k must be between {MIN_K} and {MAX_K}: no cell may describe fewer than {MIN_K} patrons")
    if not 0 < policy.epsilon_per_report <= MAX_EPSILON:
        raise InvalidInput(f"epsilon_per_report must be above 0 and at most {MAX_EPSILON}")
    if not 0 < policy.publisher_budget <= MAX_BUDGET:
        raise InvalidInput(f"publisher_budget must be above 0 and at most {MAX_BUDGET}")
    for name in ("max_cells_per_patron", "max_loans_per_cell"):
        if not 1 <= getattr(policy, name) <= MAX_BOUND:
            raise InvalidInput(f"{name} must be between 1 and {MAX_BOUND}")


def _detail(value: Any) -> Any:
    # Audit details hold no floats (their text form is not stable across encoders): repr round-trips.
    return repr(value) if isinstance(value, float) else value


# -- budgets -----------------------------------------------------------------------------------


def budgets(session: TenantSession, actor: Principal) -> list[PublisherBudget]:
    authorize(actor, Permission.REPORTS_PUBLISHERS)
    found = list(session.scalars(select(PublisherBudget).order_by(PublisherBudget.publisher).limit(LIST_LIMIT)))
    audit.record(
        session, Action.PUBLISHER_BUDGET_LISTED, ("publisher_budget", None), details={"count": len(found)}, actor=actor
    )
    return found


def set_budget(session: TenantSession, actor: Principal, publisher: str, budget: float) -> PublisherBudget:
    """The total epsilon `publisher` may receive; never below what it has already received."""
    authorize(actor, Permission.REPORTS_POLICY_MANAGE)
    if not 0 < budget <= MAX_BUDGET:
        raise InvalidInput(f"budget must be above 0 and at most {MAX_BUDGET}")
    _known_publisher(session, publisher)
    row = _budget_row(session, publisher, lock=True)
    if budget < row.spent:
        raise Conflict(f"{publisher!r} has already received epsilon {row.spent!r}: the budget cannot go below it")
    before = row.budget
    row.budget = budget
    session.flush()
    audit.record(
        session,
        Action.PUBLISHER_BUDGET_CHANGED,
        ("publisher_budget", None),
        details={"publisher": publisher, "budget": repr(budget), "was": repr(before), "spent": repr(row.spent)},
        actor=actor,
    )
    return row


def _budget_row(session: TenantSession, publisher: str, *, lock: bool) -> PublisherBudget:
    """The publisher's budget row, created at the institution's default budget on first use."""
    default = current_policy(session).publisher_budget
    session.execute(
        insert(PublisherBudget)
        .values(tenant_id=session.tenant_id, publisher=publisher, budget=default, spent=0.0)
        .on_conflict_do_nothing()
    )
    query = select(PublisherBudget).where(PublisherBudget.publisher == publisher)
    return session.scalars(query.with_for_update() if lock else query).one()


def _known_publisher(session: TenantSession, publisher: str) -> None:
    if not has_publisher(session, session.tenant_id, publisher):
        raise NotFound(f"no publisher {publisher!r} in the catalogue")


# -- computing a report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    title: str
    month: date
    loans: int
    patrons: int


def month_of(value: str) -> date:
    """'YYYY-MM' -> the first day of that month."""
    try:
        year, month = value.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError(value)
        return date(int(year), int(month), 1)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a month: write YYYY-MM") from None


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def add_months(month: str, count: int) -> str:
    """'YYYY-MM' plus `count` months, as 'YYYY-MM'."""
    day = month_of(month)
    for _ in range(count):
        day = _next_month(day)
    return f"{day:%Y-%m}"


def _months(first: date, last: date) -> list[date]:
    months = [first]
    while months[-1] < last:
        months.append(_next_month(months[-1]))
    return months


def _contributions(
    session: TenantSession, publisher: str, first: date, last: date
) -> list[tuple[str, date, UUID, int]]:
    """(title, month, patron, loans) for every patron who borrowed one of the publisher's titles.

    Patron ids stay in this function's caller, which only counts them: no report carries one.
    The publisher's items are read first and the loans matched against them as one array: row-level
    security hides from the planner how many rows are the institution's, and a join it misjudges
    (a nested loop over every loan) takes minutes where this takes one pass over the loans.
    """
    titles = dict(
        session.execute(select(CatalogueItem.item_id, CatalogueItem.title).where(CatalogueItem.publisher == publisher))
        .tuples()
        .all()
    )
    if not titles:
        return []
    month = cast(func.date_trunc("month", func.timezone("UTC", Loan.borrowed_at)), Date).label("month")
    items = bindparam("items", list(titles), type_=ARRAY(String))
    query = (
        select(Loan.item_id, month, Loan.patron_id, func.count().label("loans"))
        .where(
            Loan.item_id == any_(items),
            Loan.borrowed_at >= _utc(first),
            Loan.borrowed_at < _utc(_next_month(last)),
        )
        .group_by(Loan.item_id, month, Loan.patron_id)
    )
    per_title: dict[tuple[str, date, UUID], int] = defaultdict(int)
    for item_id, loan_month, patron_id, count in session.execute(query):
        per_title[(titles[item_id], loan_month, patron_id)] += count  # copies of one title count together
    return [(title, loan_month, patron_id, count) for (title, loan_month, patron_id), count in per_title.items()]


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def true_cells(rows: list[tuple[str, date, UUID, int]]) -> list[Cell]:
    """Loans and distinct patrons per (title, month), in title then month order."""
    loans: dict[tuple[str, date], int] = defaultdict(int)
    patrons: dict[tuple[str, date], int] = defaultdict(int)
    for title, month, _patron, count in rows:
        loans[(title, month)] += count
        patrons[(title, month)] += 1  # one row per patron and cell (GROUP BY)
    return [Cell(t, m, loans[(t, m)], patrons[(t, m)]) for t, m in sorted(loans)]


def publishable(cells: list[Cell], k: int) -> list[Cell]:
    """The cells describing at least k distinct patrons: the others are not published at all."""
    return [cell for cell in cells if cell.patrons >= k]


def bounded_counts(
    rows: list[tuple[str, date, UUID, int]], cells: list[Cell], max_cells: int, max_loans: int
) -> list[int]:
    """The vector noise is added to: bounded patron counts of `cells`, then their bounded loan counts.

    Each patron counts in at most `max_cells` of the report's cells (their earliest, then by title:
    a choice that depends on that patron's loans only) and with at most `max_loans` loans per cell.
    """
    wanted = {(c.title, c.month): i for i, c in enumerate(cells)}
    per_patron: dict[UUID, list[tuple[date, str, int]]] = defaultdict(list)
    for title, month, patron, count in rows:
        per_patron[patron].append((month, title, count))
    patrons, loans = [0] * len(cells), [0] * len(cells)
    for contributions in per_patron.values():
        for month, title, count in sorted(contributions)[:max_cells]:
            index = wanted.get((title, month))
            if index is not None:
                patrons[index] += 1
                loans[index] += min(count, max_loans)
    return patrons + loans


# -- releasing -----------------------------------------------------------------------------------


def release(
    session: TenantSession,
    actor: Principal,
    publisher: str,
    first_month: str,
    last_month: str,
    *,
    epsilon: float | None = None,
    purpose: str = DEFAULT_PURPOSE,
) -> PublisherReport:
    """Compute, record and audit one report; refused (409) when the publisher's budget cannot pay for it.
    Patrons the sharing gate leaves out for `purpose` are counted nowhere."""
    authorize(actor, Permission.REPORTS_PUBLISHERS)
    purpose = checked_purpose(purpose)  # direct marketing refused before anything else is looked at
    first, last = month_of(first_month), month_of(last_month)
    _check_months(session, first, last)
    _known_publisher(session, publisher)
    policy = current_policy(session)
    if epsilon is not None and not policy.noise:
        # A well-formed ask the institution's standing rule forbids: a conflict with the policy, not bad input.
        raise Conflict("this institution releases reports without noise: epsilon applies only with noise on")
    if epsilon is not None and not 0 < epsilon <= MAX_EPSILON:
        raise InvalidInput(f"epsilon must be above 0 and at most {MAX_EPSILON}")

    mechanism = None
    if policy.noise:
        d_in = report_noise.sensitivity(policy.max_cells_per_patron, policy.max_loans_per_cell)
        mechanism = report_noise.build(epsilon or policy.epsilon_per_report, d_in)
        _debit(session, publisher, mechanism.epsilon)  # before any noisy number exists

    decision = check_sharing(session, SharingPath.PUBLISHER_REPORT, purpose, None, actor=actor)
    rows = [row for row in _contributions(session, publisher, first, last) if decision.allows(row[2])]
    cells = true_cells(rows)
    published = publishable(cells, policy.k)
    if mechanism is not None:
        vector = bounded_counts(rows, published, policy.max_cells_per_patron, policy.max_loans_per_cell)
        noisy = mechanism.release(vector)
        n = len(published)
        # Post-processing (free of privacy cost): a count below zero is shown as zero.
        published = [
            Cell(c.title, c.month, loans=max(0, noisy[n + i]), patrons=max(0, noisy[i]))
            for i, c in enumerate(published)
        ]
    report = PublisherReport(
        id=uuid.uuid4(),
        tenant_id=session.tenant_id,
        publisher=publisher,
        purpose=purpose,
        first_month=first,
        last_month=last,
        k=policy.k,
        noise=mechanism is not None,
        mechanism=report_noise.MECHANISM if mechanism else report_noise.MECHANISM_NONE,
        epsilon=mechanism.epsilon if mechanism else None,
        noise_scale=mechanism.scale if mechanism else None,
        sensitivity=mechanism.d_in if mechanism else None,
        max_cells_per_patron=policy.max_cells_per_patron if mechanism else None,
        max_loans_per_cell=policy.max_loans_per_cell if mechanism else None,
        cells_published=len(published),
        cells_suppressed=len(cells) - len(published),
        released_by=actor.id,
    )
    report.body = _body(report, published, _months(first, last))
    session.add(report)
    session.flush()
    audit.record(
        session,
        Action.PUBLISHER_REPORT_RELEASED,
        (TARGET, report.id),
        details={
            "publisher": publisher,
            "purpose": purpose,
            "months": [m.strftime("%Y-%m") for m in (first, last)],
            "k": report.k,
            "noise": report.noise,
            "epsilon": _detail(report.epsilon),
            "cells_published": report.cells_published,
            "cells_suppressed": report.cells_suppressed,
        },
        actor=actor,
    )
    return report


def _check_months(session: TenantSession, first: date, last: date) -> None:
    if first > last:
        raise InvalidInput("first_month is after last_month")
    if len(_months(first, last)) > MAX_MONTHS:
        raise InvalidInput(f"a report covers at most {MAX_MONTHS} months")
    current = session.execute(text("SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date")).scalar_one()
    if last >= current:
        raise Conflict(f"last_month must have ended (before {current:%Y-%m}): counts of an open month change every day")


def _debit(session: TenantSession, publisher: str, epsilon: float) -> None:
    """Spend `epsilon` of the publisher's budget, or refuse: one UPDATE, under the row's lock."""
    _budget_row(session, publisher, lock=False)
    spent = session.execute(
        update(PublisherBudget)
        .where(PublisherBudget.publisher == publisher, PublisherBudget.spent + epsilon <= PublisherBudget.budget)
        .values(spent=PublisherBudget.spent + epsilon, updated_at=func.now())
        .returning(PublisherBudget.spent)
    ).first()
    if spent is None:
        row = session.scalars(select(PublisherBudget).where(PublisherBudget.publisher == publisher)).one()
        raise Conflict(
            f"the privacy budget of {publisher!r} cannot pay for this report: epsilon {epsilon!r} asked, "
            f"{row.budget - row.spent!r} left of {row.budget!r}; nothing was released"
        )


def _body(report: PublisherReport, cells: list[Cell], months: list[date]) -> dict[str, Any]:
    """What leaves: published cells, and per month the total of the published cells only."""
    totals = []
    for month in months:
        under = [c for c in cells if c.month == month]
        if under:
            totals.append({"month": f"{month:%Y-%m}", "loans": sum(c.loans for c in under), "titles": len(under)})
    return {
        "report_id": str(report.id),
        "publisher": report.publisher,
        "first_month": f"{report.first_month:%Y-%m}",
        "last_month": f"{report.last_month:%Y-%m}",
        "k": report.k,
        "noise": (
            {
                "mechanism": report.mechanism,
                "epsilon": report.epsilon,
                "scale": report.noise_scale,
                "max_titles_per_patron": report.max_cells_per_patron,
                "max_loans_per_title": report.max_loans_per_cell,
            }
            if report.noise
            else None
        ),
        "cells": [
            {"title": c.title, "month": f"{c.month:%Y-%m}", "loans": c.loans, "patrons": c.patrons} for c in cells
        ],
        "month_totals": totals,
        "notes": (
            f"Each cell counts loans and distinct patrons of one title in one calendar month (UTC). Cells describing "
            f"fewer than {report.k} patrons are not published; month totals add up the published cells only."
            + (" Counts carry random noise (differential privacy)." if report.noise else "")
        ),
    }


# -- reading releases again ----------------------------------------------------------------------


def releases(session: TenantSession, actor: Principal, publisher: str | None = None) -> list[PublisherReport]:
    authorize(actor, Permission.REPORTS_PUBLISHERS)
    query = select(PublisherReport).order_by(PublisherReport.released_at.desc(), PublisherReport.id).limit(LIST_LIMIT)
    if publisher is not None:
        query = query.where(PublisherReport.publisher == publisher)
    found = list(session.scalars(query))
    audit.record(
        session,
        Action.PUBLISHER_REPORT_LISTED,
        (TARGET, None),
        details={"ids": [str(r.id) for r in found], "count": len(found)},
        actor=actor,
    )
    return found


def read(session: TenantSession, actor: Principal, report_id: UUID) -> PublisherReport:
    """A release as it left: the same numbers, no new epsilon spent."""
    authorize(actor, Permission.REPORTS_PUBLISHERS)
    report = session.get(PublisherReport, (session.tenant_id, report_id))
    if report is None:
        raise NotFound(f"no publisher report {report_id}")
    audit.record(session, Action.PUBLISHER_REPORT_VIEWED, (TARGET, report.id), actor=actor)
    return report


# -- rendering -----------------------------------------------------------------------------------

CSV_FIELDS = ("report_id", "publisher", "row", "month", "title", "loans", "patrons", "titles", "k", "epsilon")


def render(report: PublisherReport, fmt: ReportFormat) -> str:
    if fmt is ReportFormat.JSON:
        return json.dumps(report.body, ensure_ascii=False, indent=2)
    body = report.body
    epsilon = "" if body["noise"] is None else repr(body["noise"]["epsilon"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    common = {"report_id": body["report_id"], "publisher": body["publisher"], "k": body["k"], "epsilon": epsilon}
    for cell in body["cells"]:
        row = {**common, "row": "title", "titles": "", **cell}
        # Titles and publishers come from an uploaded catalogue: never let a spreadsheet run them.
        writer.writerow(spreadsheet_safe(row.get(f, "") for f in CSV_FIELDS))
    for total in body["month_totals"]:
        row = {**common, "row": "month_total", "title": "", "patrons": "", **total}
        writer.writerow(spreadsheet_safe(row.get(f, "") for f in CSV_FIELDS))
    return buffer.getvalue()
