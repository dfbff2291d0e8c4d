"""Retention in the institution console: each category's period (a change is asked, a second person
approves), what the next purge would remove (the preview) and the latest purge runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.retention import service as retention
from bookwarden.privacy.retention.models import RetentionCategory
from bookwarden.privacy.retention.routes import _period_input
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()
MANAGE = Depends(requires(Permission.PRIVACY_RETENTION_MANAGE))
HOME = "/console/privacy/retention"
entry(
    Console.INSTITUTION,
    "Privacy",
    "Retention",
    HOME,
    Permission.PRIVACY_RETENTION_MANAGE,
    "how long each kind of data is kept, and what the next purge removes",
)
DONE = {"asked": "Asked: applied when another officer approves it (Approvals); the security contacts are told."}


@router.get(HOME)
def retention_view(
    request: Request,
    principal: Principal = MANAGE,
    done_: Annotated[str | None, Query(alias="done", max_length=20)] = None,
):
    with tenant_scope(request, principal) as session:
        periods = retention.view_periods(session, principal)
        preview = retention.preview(session, principal)
        runs = retention.list_runs(session, principal, limit=10)
    return page(
        request,
        Console.INSTITUTION,
        "console/retention.html",
        title="Retention",
        periods=periods,
        preview=preview,
        runs=runs,
        done=done(done_, DONE),
    )


@router.post(HOME + "/{category}")
def ask_period(request: Request, category: RetentionCategory, principal: Principal = MANAGE):
    """Ask for a new period; a blank field asks for "kept until deleted" where the category allows it."""
    body = read_form(request, _period_input(category), keep_days=form(request).get("keep_days") or None)
    with tenant_scope(request, principal) as session:
        retention.ask_change(session, principal, category, body.keep_days)
    return RedirectResponse(f"{HOME}?done=asked", status_code=303)
