"""The patron portal's "my data" and "my posts": the patron's own record, opened for them, and their posts.

The same services as GET /api/v1/me/posts and DELETE /api/v1/me/posts/{id} (library/service.py), with
the signed-in patron as actor; "my data" reads the record through `own_record`, each read audited as
the patron's own. Loans per month are drawn as an SVG chart (no script, no style attribute).

Usage in both consoles (an institution's own; every institution's, for operators' charges), and the
one page where an operator sees an institution's data: its patrons, through an approved, current grant.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.library import records, service
from bookwarden.library import service as library
from bookwarden.library import usage as metering
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.portal import PATRON, render_portal
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires, tenant_scope, through_grant

router = PageRouter()
CHART_MONTHS = 12


@router.get("/portal")
def my_data(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        mine = service.own_record(session, principal)
        chart = loans_per_month(mine.loans, date.today())
        return render_portal(
            request, session, principal, "portal/my_data.html", title="My data", mine=mine, chart=chart
        )


def loans_per_month(loans, today: date, months: int = CHART_MONTHS) -> list[tuple[str, int]]:
    """(label, count) for each of the last `months` months, oldest first: what the chart draws."""
    counted = Counter((loan.borrowed_at.year, loan.borrowed_at.month) for loan in loans)
    first = today.year * 12 + today.month - 1 - (months - 1)
    out = []
    for n in range(first, first + months):
        year, month = divmod(n, 12)
        out.append((date(year, month + 1, 1).strftime("%b %Y"), counted.get((year, month + 1), 0)))
    return out


@router.get("/portal/posts")
def my_posts(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        posts = service.own_posts(session, principal, cursor=None, limit=200)
        done = "Your post is deleted." if "deleted" in request.query_params else ""
        return render_portal(
            request, session, principal, "portal/posts.html", title="My posts", posts=posts.items, done=done
        )


@router.post("/portal/posts/{post_id}/delete")
def delete_post(request: Request, post_id: UUID, principal: Principal = Depends(PATRON)):
    """Delete one of my posts (another patron's is not found, as in the API)."""
    with tenant_scope(request, principal) as session:
        service.delete_own_post(session, principal, post_id)
    return RedirectResponse("/portal/posts?deleted", status_code=303)


# -- the institution and operator consoles ---------------------------------------------------------
Month = Annotated[str | None, Query(pattern=metering.MONTH.pattern)]
OWN, ALL = "/console/usage", "/operator/usage"
entry(
    Console.INSTITUTION,
    "Usage",
    "This month's usage",
    OWN,
    Permission.AUDIT_READ,
    "API calls, events, records and storage, as the platform meters them",
)
entry(
    Console.OPERATOR,
    "Usage",
    "Usage per institution",
    ALL,
    Permission.PLATFORM_USAGE_READ,
    "for charges: counts and sizes, no data",
)


@router.get(OWN)
def own_usage(request: Request, principal: Principal = Depends(requires(Permission.AUDIT_READ)), month: Month = None):
    month = month or metering.current_month()
    with tenant_scope(request, principal) as session:
        usage = metering.own_usage(session, principal, month)
    return page(
        request, Console.INSTITUTION, "console/usage.html", title=f"Usage in {month}", month=month, usages=[("", usage)]
    )


@router.get(ALL)
def usage_report(
    request: Request, principal: Principal = Depends(requires(Permission.PLATFORM_USAGE_READ)), month: Month = None
):
    month = month or metering.current_month()
    usages = metering.report(request.app.state.db, principal, month)
    return page(request, Console.OPERATOR, "console/usage.html", title=f"Usage in {month}", month=month, usages=usages)


@router.get("/operator/grants/{grant_id}/patrons")
def patrons_through_grant(
    request: Request,
    grant_id: UUID,
    principal: Principal = Depends(requires(Permission.PLATFORM_GRANTS_REQUEST)),
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{22}$")] = None,
):
    """The institution's patrons, read as the grant's principal: refused unless the grant is approved, current,
    this operator's and of a scope that reads patrons; every use recorded in the institution's trail."""
    acting = through_grant(request, principal, grant_id)
    with tenant_scope(request, acting) as session:
        found = library.list_page(session, acting, records.PATRONS, cursor=cursor, limit=50)
    return page(
        request,
        Console.OPERATOR,
        "console/grant_patrons.html",
        title="Patrons, through your grant",
        grant_id=grant_id,
        rows=found.items,
        next_cursor=found.next_cursor,
    )
