"""Publisher reports in the institution console: what was released (who, when, under which k and epsilon),
the institution's anonymity rules and each publisher's privacy budget; releasing a report and reading one
again (as it left: the same numbers, no epsilon spent), also as CSV. The same service and input model as
POST /api/v1/reports/publishers: the loans of patrons who object are counted nowhere (the sharing gate)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from bookwarden.api.problems import record_refusal
from bookwarden.core.errors import BookwardenError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.reports import service as publisher_reports
from bookwarden.privacy.reports.routes import ReportIn, _budget, _release, _rendered
from bookwarden.privacy.reports.service import ReportFormat
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()
HOME = "/console/privacy/publisher-reports"
RELEASE = Depends(requires(Permission.REPORTS_PUBLISHERS))
Done = Annotated[str | None, Query(alias="done", max_length=20)]
DONE = {"released": "Released: this is the report as it left. Send the publisher this, and nothing else."}
GIVEN = ("publisher", "first_month", "months", "epsilon", "purpose")
entry(
    Console.INSTITUTION,
    "Privacy",
    "Publisher reports",
    HOME,
    Permission.REPORTS_PUBLISHERS,
    "anonymized usage released to publishers, and their budgets",
)


def _releases(request: Request, principal: Principal, status_code: int = 200, **context):
    with tenant_scope(request, principal) as session:
        released = [_release(r) for r in publisher_reports.releases(session, principal, None)]
        policy = publisher_reports.read_policy(session, principal).as_dict()
        budgets = [_budget(row) for row in publisher_reports.budgets(session, principal)]
    context = {"error": "", "given": {}, **context}
    return page(
        request, Console.INSTITUTION, "console/publisher_reports.html", status_code=status_code,
        title="Publisher reports", released=released, policy=policy, budgets=budgets,
        default_purpose=publisher_reports.DEFAULT_PURPOSE, max_months=publisher_reports.MAX_MONTHS, **context,
    )  # fmt: skip


@router.get(HOME)
def releases(request: Request, principal: Principal = RELEASE):
    return _releases(request, principal)


@router.post(HOME)
def release_report(request: Request, principal: Principal = RELEASE):
    """Release a report of whole months; a refusal (budget spent, a month not over, no such publisher) is shown
    on the form with what was typed."""
    fields = form(request)
    try:
        body = read_form(request, ReportIn)
        with tenant_scope(request, principal) as session:
            last_month = publisher_reports.add_months(body.first_month, body.months - 1)
            report = publisher_reports.release(
                session, principal, body.publisher, body.first_month, last_month, epsilon=body.epsilon,
                purpose=body.purpose,
            )  # fmt: skip
    except BookwardenError as refused:
        record_refusal(request, refused)  # recorded as the API records it; shown on the form
        given = {name: fields.get(name, "") for name in GIVEN}
        return _releases(request, principal, status_code=refused.status, error=refused.detail, given=given)
    return RedirectResponse(f"{HOME}/{report.id}?done=released", status_code=303)


@router.get(HOME + "/{report_id}")
def read_report(request: Request, report_id: UUID, principal: Principal = RELEASE, done_: Done = None):
    with tenant_scope(request, principal) as session:
        report = publisher_reports.read(session, principal, report_id)
        summary, body = _release(report), report.body
    return page(
        request, Console.INSTITUTION, "console/publisher_report.html", title=f"Report for {summary.publisher}",
        r=summary, body=body, done=done(done_, DONE),
    )  # fmt: skip


@router.get(HOME + "/{report_id}/csv")
def report_csv(request: Request, report_id: UUID, principal: Principal = RELEASE) -> Response:
    """The same report as CSV (one row per cell, then month totals), as the API gives it."""
    with tenant_scope(request, principal) as session:
        return _rendered(publisher_reports.read(session, principal, report_id), ReportFormat.CSV, 200)
