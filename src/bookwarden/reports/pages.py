"""Security reports and live evidence in the consoles: an institution's own (`reports.security.read`), the
platform's or one institution's for operators (`platform.reports.read`). The same services as the API's
routes (reports/routes.py): the month's report section by section, and every control checked now, each
shown holding (green) or failing (red), with the document's signature."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request

from bookwarden.core import charts
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.reports import evidence, security
from bookwarden.reports.registry import MONTH_PATTERN, Month, Status
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
INSTITUTION_REPORT, INSTITUTION_EVIDENCE = "/console/security-report", "/console/evidence"
OPERATOR_REPORT, OPERATOR_EVIDENCE = "/operator/security-report", "/operator/evidence"
INSTITUTION = Depends(requires(Permission.REPORTS_SECURITY_READ))
PLATFORM = Depends(requires(Permission.PLATFORM_REPORTS_READ))
MonthQuery = Annotated[str | None, Query(alias="month", pattern=MONTH_PATTERN)]
TenantQuery = Annotated[UUID | None, Query(alias="institution")]
SIGN_INS = ("succeeded", "failed", "second_factor_failed", "throttled", "locked")
entry(
    Console.INSTITUTION, "Audit", "Security report", INSTITUTION_REPORT, Permission.REPORTS_SECURITY_READ,
    "the month in numbers: sign-ins, entitlement changes, requests, backups",
)  # fmt: skip
entry(
    Console.INSTITUTION, "Audit", "Evidence", INSTITUTION_EVIDENCE, Permission.REPORTS_SECURITY_READ,
    "every promise of the statement, its control checked now",
)  # fmt: skip
entry(
    Console.OPERATOR, "Evidence", "Live evidence", OPERATOR_EVIDENCE, Permission.PLATFORM_REPORTS_READ,
    "every control checked now, signed: the platform's or one institution's",
)  # fmt: skip
entry(
    Console.OPERATOR, "Evidence", "Security report", OPERATOR_REPORT, Permission.PLATFORM_REPORTS_READ,
    "the platform's month for management",
)  # fmt: skip


def _sign_in_chart(data: dict) -> str:
    labels = [day["day"][-2:] for day in data["days"]]
    series = {name.replace("_", " "): [day[name] for day in data["days"]] for name in SIGN_INS}
    return charts.bars("Sign-ins per day", labels, series, stacked=True)


def _report(request: Request, principal: Principal, console: Console, month: str | None, tenant_id: UUID | None):
    chosen = Month.parse(month) if month else Month.of(datetime.now(UTC))
    report = security.read_report(request.app.state.db, principal, chosen, tenant_id, "html")
    sections = [
        {
            **section,
            "headline": security.headline(section["key"], section["data"]) if section["available"] else "",
            "chart": _sign_in_chart(section["data"]) if section["available"] and section["key"] == "sign_ins" else "",
        }
        for section in report["sections"]
    ]
    return page(
        request, console, "console/security_report.html", title=f"Security report: {report['scope']['name']}",
        report=report, sections=sections, month=str(chosen), action=request.url.path, tenant_id=tenant_id,
    )  # fmt: skip


def _evidence(request: Request, principal: Principal, console: Console, tenant_id: UUID | None):
    signed = evidence.build(request.app.state.db, principal, request.app.state.settings, tenant_id)
    document = signed["evidence"]
    counts = {status: sum(1 for c in document["controls"] if c["status"] == status) for status in Status}
    return page(
        request, console, "console/evidence.html", title="Live evidence", signed=signed, evidence=document,
        counts=counts, action=request.url.path, tenant_id=tenant_id, operator=console is Console.OPERATOR,
    )  # fmt: skip


@router.get(INSTITUTION_REPORT)
def institution_report(request: Request, principal: Principal = INSTITUTION, month: MonthQuery = None):
    """The institution's month (this month so far, unless another is chosen)."""
    return _report(request, principal, Console.INSTITUTION, month, None)


@router.get(INSTITUTION_EVIDENCE)
def institution_evidence(request: Request, principal: Principal = INSTITUTION):
    """Every control checked now for the institution."""
    return _evidence(request, principal, Console.INSTITUTION, None)


@router.get(OPERATOR_REPORT)
def platform_report(
    request: Request, principal: Principal = PLATFORM, month: MonthQuery = None, tenant_id: TenantQuery = None
):
    """The platform's month, or one institution's (counts only)."""
    return _report(request, principal, Console.OPERATOR, month, tenant_id)


@router.get(OPERATOR_EVIDENCE)
def platform_evidence(request: Request, principal: Principal = PLATFORM, tenant_id: TenantQuery = None):
    """Every control checked now for the platform, or for one institution."""
    return _evidence(request, principal, Console.OPERATOR, tenant_id)
