"""Retention in the institution console: each category's period (a change is asked, a second person
approves), what the next purge would remove (the preview) and the latest purge runs; and legal holds
(place, list, lift: privacy/retention/holds.py, the service of /api/v1/privacy/holds, with its input models)."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.api.problems import record_refusal
from bookwarden.core.errors import BookwardenError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.retention import holds
from bookwarden.privacy.retention import service as retention
from bookwarden.privacy.retention.models import RetentionCategory
from bookwarden.privacy.retention.routes import CategoryHoldIn, PatronHoldIn, _period_input
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


# -- legal holds -----------------------------------------------------------------------------------

HOLDS = "/console/privacy/legal-holds"
HOLDS_MANAGE = Depends(requires(Permission.PRIVACY_HOLDS_MANAGE))
entry(
    Console.INSTITUTION,
    "Privacy",
    "Legal holds",
    HOLDS,
    Permission.PRIVACY_HOLDS_MANAGE,
    "data a matter requires kept: neither purged nor erased until lifted",
)
HOLDS_DONE = {
    "placed": "Hold placed: nothing it covers is purged or erased until it is lifted or ends.",
    "lifted": "Hold lifted: its data follows its retention periods again.",
}


def _holds(request: Request, principal: Principal, include_ended: bool, status_code: int = 200, **context):
    with tenant_scope(request, principal) as session:
        found = holds.list_holds(session, principal, include_ended=include_ended)
    context = {"error": "", "given": {}, **context}
    return page(
        request, Console.INSTITUTION, "console/legal_holds.html", status_code=status_code, title="Legal holds",
        holds=found, include_ended=include_ended, categories=list(RetentionCategory), **context,
    )  # fmt: skip


@router.get(HOLDS)
def hold_list(
    request: Request,
    principal: Principal = HOLDS_MANAGE,
    done_: Annotated[str | None, Query(alias="done", max_length=20)] = None,
    ended: Annotated[bool, Query()] = False,
):
    """The active holds (and, when asked, those lifted or past their end), newest first."""
    return _holds(request, principal, ended, done=done(done_, HOLDS_DONE))


@router.post(HOLDS)
def place_hold(request: Request, principal: Principal = HOLDS_MANAGE):
    """A patron's data (all of it, or one category), or one category of every patron's; until lifted or a date."""
    fields = form(request)
    try:
        until = fields.get("held_until", "")
        # A datetime-local field has no zone: the form says UTC.
        until = until if not until or re.search(r"(Z|[+-]\d\d:\d\d)$", until) else until + "+00:00"
        model = PatronHoldIn if fields.get("patron_id") else CategoryHoldIn
        body = read_form(request, model, held_until=until or None)
        with tenant_scope(request, principal) as session:
            holds.place(
                session, principal, reason=body.reason, patron_id=getattr(body, "patron_id", None),
                category=body.category, held_until=body.held_until,
            )  # fmt: skip
    except BookwardenError as refused:
        record_refusal(request, refused)  # recorded as the API records it; shown on the form
        given = {name: fields.get(name, "") for name in ("patron_id", "category", "reason", "held_until")}
        return _holds(request, principal, False, status_code=refused.status, error=refused.detail, given=given)
    return RedirectResponse(f"{HOLDS}?done=placed", status_code=303)


@router.post(HOLDS + "/{hold_id}/lift")
def lift_hold(request: Request, hold_id: UUID, principal: Principal = HOLDS_MANAGE):
    with tenant_scope(request, principal) as session:
        holds.lift(session, principal, hold_id)
    return RedirectResponse(f"{HOLDS}?done=lifted", status_code=303)
