"""Security reports and live evidence over HTTP: an institution's own (reports.security.read), and the
platform's or one institution's for operators (platform.reports.read). JSON, or the readable page."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

import enum
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from bookwarden.api.deps import database, requires
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database
from bookwarden.reports import evidence, render, security
from bookwarden.reports.registry import MONTH_PATTERN, Month

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422))
INSTITUTION = Depends(requires(Permission.REPORTS_SECURITY_READ))
PLATFORM = Depends(requires(Permission.PLATFORM_REPORTS_READ))
PAGES = {"content": {"application/json": {}, "text/html": {}}}


class Format(enum.StrEnum):
    JSON = "json"
    HTML = "html"


MONTH = Query(pattern=MONTH_PATTERN, description="the month, YYYY-MM (UTC)")


def _report(db: Database, principal: Principal, month: str, tenant_id: UUID | None, fmt: Format):
    report = security.read_report(db, principal, Month.parse(month), tenant_id, fmt.value)
    if fmt is Format.HTML:
        return HTMLResponse(render.report_html(report), headers=_download(f"security-report-{month}.html"))
    return JSONResponse(report)


def _evidence(request: Request, db: Database, principal: Principal, tenant_id: UUID | None, fmt: Format):
    signed = evidence.build(db, principal, request.app.state.settings, tenant_id)
    stamp = signed["evidence"]["checked_at"][:10]
    if fmt is Format.HTML:
        return HTMLResponse(render.evidence_html(signed), headers=_download(f"evidence-{stamp}.html"))
    return JSONResponse(signed, headers=_download(f"evidence-{stamp}.json"))


def _download(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"}


@router.get("/reports/security", tags=["security reports"], responses={200: PAGES})
def institution_report(
    month: str = MONTH,
    format: Format = Format.JSON,
    principal: Principal = INSTITUTION,
    db: Database = Depends(database),
) -> Any:
    """The institution's monthly security report: every section, its numbers (JSON) or the page with charts."""
    return _report(db, principal, month, None, format)


@router.get("/operator/reports/security", tags=["operator: security reports"], responses={200: PAGES, **responses(404)})
def platform_report(
    month: str = MONTH,
    tenant_id: UUID | None = None,
    format: Format = Format.JSON,
    principal: Principal = PLATFORM,
    db: Database = Depends(database),
) -> Any:
    """The platform's monthly security report for management, or one institution's (counts only)."""
    return _report(db, principal, month, tenant_id, format)


@router.get("/evidence", tags=["security reports"], responses={200: PAGES})
def institution_evidence(
    request: Request, format: Format = Format.JSON, principal: Principal = INSTITUTION, db: Database = Depends(database)
) -> Any:
    """Live evidence for every promise, for the institution: each control checked now, signed and dated."""
    return _evidence(request, db, principal, None, format)


@router.get("/operator/evidence", tags=["operator: security reports"], responses={200: PAGES, **responses(404)})
def platform_evidence(
    request: Request,
    tenant_id: UUID | None = None,
    format: Format = Format.JSON,
    principal: Principal = PLATFORM,
    db: Database = Depends(database),
) -> Any:
    """Live evidence for the platform, or for one institution: each control checked now, signed and dated."""
    return _evidence(request, db, principal, tenant_id, format)
