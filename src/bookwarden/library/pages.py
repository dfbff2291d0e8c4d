"""Usage in both consoles (an institution's own; every institution's, for operators' charges), and the
one page where an operator sees an institution's data: its patrons, through an approved, current grant."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request

from bookwarden.api.deps import tenant_scope
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.library import records
from bookwarden.library import service as library
from bookwarden.library import usage as metering
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires, through_grant

router = PageRouter()
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
    with tenant_scope(request.app.state.db, principal) as session:
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
    with tenant_scope(request.app.state.db, acting) as session:
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
