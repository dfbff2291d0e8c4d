"""Publisher reports in the institution console: what was released (who, when, under which k and epsilon),
the institution's anonymity rules and each publisher's privacy budget."""

from __future__ import annotations

from fastapi import Depends, Request

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.reports import service as publisher_reports
from bookwarden.privacy.reports.routes import _budget, _release
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()
HOME = "/console/privacy/publisher-reports"
entry(
    Console.INSTITUTION,
    "Privacy",
    "Publisher reports",
    HOME,
    Permission.REPORTS_PUBLISHERS,
    "anonymized usage released to publishers, and their budgets",
)


@router.get(HOME)
def releases(request: Request, principal: Principal = Depends(requires(Permission.REPORTS_PUBLISHERS))):
    with tenant_scope(request, principal) as session:
        released = [_release(r) for r in publisher_reports.releases(session, principal, None)]
        policy = publisher_reports.read_policy(session, principal).as_dict()
        budgets = [_budget(row) for row in publisher_reports.budgets(session, principal)]
    return page(
        request,
        Console.INSTITUTION,
        "console/publisher_reports.html",
        title="Publisher reports",
        released=released,
        policy=policy,
        budgets=budgets,
    )
