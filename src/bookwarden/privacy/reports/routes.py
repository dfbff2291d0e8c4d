"""Anonymized publisher reports over HTTP: the catalogue, the institution's rules and budgets, releases."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from bookwarden.api import bodies
from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import PURPOSE_PATTERN, SharingPath, sharing_marker
from bookwarden.db.session import Database
from bookwarden.privacy.reports import catalogue
from bookwarden.privacy.reports import service as publisher_reports
from bookwarden.privacy.reports.models import MIN_K
from bookwarden.privacy.reports.service import MEDIA_TYPES, ReportFormat

router = APIRouter(prefix="/api/v1/reports", tags=["publisher reports"], responses=responses(401, 403, 422))
RELEASE = Depends(requires(Permission.REPORTS_PUBLISHERS))
CATALOGUE = Depends(requires(Permission.REPORTS_CATALOGUE_MANAGE))
POLICY = Depends(requires(Permission.REPORTS_POLICY_MANAGE))

# The catalogue's own limits (privacy/reports/catalogue.py): no control characters, not blank, trimmed length.
Publisher = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=catalogue.VALUE_PATTERN)]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=catalogue.VALUE_PATTERN)]
Month = Annotated[str, StringConstraints(pattern=r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])$")]
Epsilon = Annotated[float, Field(gt=0, le=publisher_reports.MAX_EPSILON)]
FormatQuery = Annotated[ReportFormat, Query(description="json, or csv (one row per cell, then month totals)")]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- catalogue ------------------------------------------------------------------------------------

CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                # The format names what no JSON Schema can state (one line per item id, each once):
                # tests/invariants/test_openapi_fuzz.py generates valid files for it.
                "schema": {
                    "type": "string",
                    "format": "catalogue-csv",
                    "description": "UTF-8 CSV with the header item_id,title,publisher; each item id once",
                }
            }
        },
    }
}


class ImportOut(BaseModel):
    items: int
    added: int
    changed: int
    unchanged: int
    removed: int


class CatalogueItemOut(BaseModel):
    item_id: str
    title: str
    publisher: str
    updated_at: datetime


class CatalogueOut(BaseModel):
    items: list[CatalogueItemOut]
    next_after: str | None


@router.post("/catalogue", response_model=ImportOut, openapi_extra=CSV_BODY)
@bodies.limit(catalogue.MAX_BYTES)  # a larger file is refused (413) before it is read: load it in parts
async def import_catalogue(
    request: Request,
    principal: Principal = CATALOGUE,
    db: Database = Depends(database),
    replace: Annotated[bool, Query(description="also remove the items the file does not list")] = False,
):
    """Load titles and publishers of items from CSV: every line checked first, nothing written unless all pass."""
    content = await request.body()

    def load():
        with tenant_scope(db, principal) as session:
            return catalogue.load(session, principal, content, replace=replace)

    return ImportOut(**(await run_in_threadpool(load)).__dict__)


@router.get("/catalogue", response_model=CatalogueOut)
def list_catalogue(
    principal: Principal = RELEASE,
    db: Database = Depends(database),
    publisher: Publisher | None = None,
    after: Annotated[ItemId | None, Query(description="the last item id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=catalogue.LIST_LIMIT)] = 100,
):
    """Catalogue items in item id order, a page at a time."""
    with tenant_scope(db, principal) as session:
        found = catalogue.entries(session, principal, publisher=publisher, after=after, limit=limit)
        items = [CatalogueItemOut(**{f: getattr(i, f) for f in CatalogueItemOut.model_fields}) for i in found]
    return CatalogueOut(items=items, next_after=items[-1].item_id if len(items) == limit else None)


# -- the institution's rules and the budgets -------------------------------------------------------


class ReportPolicyOut(BaseModel):
    k: int
    noise: bool
    epsilon_per_report: float
    publisher_budget: float
    max_cells_per_patron: int
    max_loans_per_cell: int


class ReportPolicyIn(Input):
    k: Annotated[int | None, Field(ge=MIN_K, le=publisher_reports.MAX_K)] = None
    noise: bool | None = None
    epsilon_per_report: Annotated[float | None, Field(gt=0, le=publisher_reports.MAX_EPSILON)] = None
    publisher_budget: Annotated[float | None, Field(gt=0, le=publisher_reports.MAX_BUDGET)] = None
    max_cells_per_patron: Annotated[int | None, Field(ge=1, le=publisher_reports.MAX_BOUND)] = None
    max_loans_per_cell: Annotated[int | None, Field(ge=1, le=publisher_reports.MAX_BOUND)] = None


@router.get("/policy", response_model=ReportPolicyOut)
def read_policy(principal: Principal = RELEASE, db: Database = Depends(database)):
    """k, whether reports carry noise, epsilon per report, the default budget per publisher, contribution bounds."""
    with tenant_scope(db, principal) as session:
        return ReportPolicyOut(**publisher_reports.read_policy(session, principal).as_dict())


@router.put("/policy", response_model=ReportPolicyOut)
def change_policy(body: ReportPolicyIn, principal: Principal = POLICY, db: Database = Depends(database)):
    """Change some of the rules; k is never below 10."""
    with tenant_scope(db, principal) as session:
        return ReportPolicyOut(**publisher_reports.set_policy(session, principal, **body.model_dump()).as_dict())


class BudgetOut(BaseModel):
    publisher: str
    budget: float
    spent: float
    remaining: float


class BudgetList(BaseModel):
    items: list[BudgetOut]


class BudgetIn(Input):
    publisher: Publisher
    budget: Annotated[float, Field(gt=0, le=publisher_reports.MAX_BUDGET)]


def _budget(row) -> BudgetOut:
    return BudgetOut(publisher=row.publisher, budget=row.budget, spent=row.spent, remaining=row.budget - row.spent)


@router.get("/budgets", response_model=BudgetList)
def list_budgets(principal: Principal = RELEASE, db: Database = Depends(database)):
    """Epsilon each publisher may receive in all, and how much it has received."""
    with tenant_scope(db, principal) as session:
        return BudgetList(items=[_budget(row) for row in publisher_reports.budgets(session, principal)])


@router.put("/budgets", response_model=BudgetOut, responses=responses(404, 409))
def set_budget(body: BudgetIn, principal: Principal = POLICY, db: Database = Depends(database)):
    """Set a publisher's total budget; never below what it has already received."""
    with tenant_scope(db, principal) as session:
        return _budget(publisher_reports.set_budget(session, principal, body.publisher, body.budget))


# -- releases ---------------------------------------------------------------------------------------


class ReportIn(Input):
    publisher: Publisher
    first_month: Month
    # A count, not a last month: a range that runs backwards or too long cannot be asked for.
    months: Annotated[int, Field(ge=1, le=publisher_reports.MAX_MONTHS)] = 1
    epsilon: Epsilon | None = Field(None, description="with noise on: the epsilon to spend; default the policy's")
    purpose: Annotated[str, StringConstraints(pattern=PURPOSE_PATTERN)] = Field(
        publisher_reports.DEFAULT_PURPOSE,
        description="what the report is for: patrons who object to it are counted nowhere; direct marketing is refused",
    )


class NoiseOut(BaseModel):
    mechanism: str
    epsilon: float
    scale: float
    max_titles_per_patron: int
    max_loans_per_title: int


class CellOut(BaseModel):
    title: str
    month: str
    loans: int
    patrons: int


class MonthTotalOut(BaseModel):
    month: str
    loans: int
    titles: int


class ReportOut(BaseModel):
    report_id: UUID
    publisher: str
    first_month: str
    last_month: str
    k: int
    noise: NoiseOut | None
    cells: list[CellOut]
    month_totals: list[MonthTotalOut]
    notes: str


class ReleaseOut(BaseModel):
    id: UUID
    publisher: str
    purpose: str
    first_month: str
    last_month: str
    k: int
    noise: bool
    epsilon: float | None
    cells_published: int
    released_by: UUID
    released_at: datetime


class ReleaseList(BaseModel):
    items: list[ReleaseOut]


REPORT_CONTENT = {200: {"content": {MEDIA_TYPES[ReportFormat.CSV]: {"schema": {"type": "string"}}}}}


def _rendered(report, fmt: ReportFormat, status: int) -> Response:
    headers = {}
    if fmt is ReportFormat.CSV:
        headers["Content-Disposition"] = f'attachment; filename="publisher-report-{report.id}.csv"'
    return Response(publisher_reports.render(report, fmt), status_code=status, media_type=MEDIA_TYPES[fmt],
                    headers=headers)  # fmt: skip


@router.post(
    "/publishers",
    status_code=201,
    response_model=ReportOut,
    responses={201: REPORT_CONTENT[200], **responses(404, 409)},
    openapi_extra=sharing_marker(SharingPath.PUBLISHER_REPORT),
)
def release_report(
    body: ReportIn,
    principal: Principal = RELEASE,
    db: Database = Depends(database),
    format: FormatQuery = ReportFormat.JSON,
):
    """Release a report of `months` whole months from `first_month`: loans and distinct patrons per title and
    month, cells under k patrons suppressed, noise when the institution chose it; the loans of patrons who
    object (to third parties or to the purpose) or are restricted are counted nowhere. 409 when the publisher's
    budget cannot pay for it, when the last month has not ended, or for an epsilon with noise off."""
    with tenant_scope(db, principal) as session:
        last_month = publisher_reports.add_months(body.first_month, body.months - 1)
        report = publisher_reports.release(
            session, principal, body.publisher, body.first_month, last_month, epsilon=body.epsilon, purpose=body.purpose
        )
        return _rendered(report, format, 201)


@router.get("/publishers", response_model=ReleaseList)
def list_releases(principal: Principal = RELEASE, db: Database = Depends(database), publisher: Publisher | None = None):
    """Reports released, the latest first: who, when, for which publisher and months, under which k and epsilon."""
    with tenant_scope(db, principal) as session:
        found = publisher_reports.releases(session, principal, publisher)
        return ReleaseList(items=[_release(r) for r in found])


def _release(report) -> ReleaseOut:
    return ReleaseOut(
        id=report.id,
        publisher=report.publisher,
        purpose=report.purpose,
        first_month=f"{report.first_month:%Y-%m}",
        last_month=f"{report.last_month:%Y-%m}",
        k=report.k,
        noise=report.noise,
        epsilon=report.epsilon,
        cells_published=report.cells_published,
        released_by=report.released_by,
        released_at=report.released_at,
    )


@router.get("/publishers/{report_id}", response_model=ReportOut, responses={**REPORT_CONTENT, **responses(404)})
def read_report(
    report_id: UUID,
    principal: Principal = RELEASE,
    db: Database = Depends(database),
    format: FormatQuery = ReportFormat.JSON,
):
    """A released report again, exactly as it left: the same numbers, no epsilon spent."""
    with tenant_scope(db, principal) as session:
        return _rendered(publisher_reports.read(session, principal, report_id), format, 200)
