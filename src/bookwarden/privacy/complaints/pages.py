"""Complaints in the institution console: the SLA view, one complaint, its answer (mailed to the complainant)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.api.deps import tenant_scope
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.complaints.routes import AnswerIn
from bookwarden.privacy.complaints.service import SlaState
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
HANDLE = Depends(requires(Permission.PRIVACY_COMPLAINTS_HANDLE))
HOME = "/console/privacy/complaints"
entry(
    Console.INSTITUTION,
    "Privacy",
    "Complaints",
    HOME,
    Permission.PRIVACY_COMPLAINTS_HANDLE,
    "acknowledged at once, answered within 45 days",
)
DONE = {"answered": "Answered and closed; the answer is mailed to the complainant."}


@router.get(HOME)
def sla_view(request: Request, principal: Principal = HANDLE, state: Annotated[SlaState, Query()] = SlaState.OPEN):
    with tenant_scope(request.app.state.db, principal) as session:
        found = complaints.sla_view(session, principal, state)
    return page(
        request,
        Console.INSTITUTION,
        "console/complaints.html",
        title="Complaints",
        rows=found,
        state=state,
        states=list(SlaState),
    )


@router.get(HOME + "/{complaint_id}")
def read_complaint(
    request: Request,
    complaint_id: UUID,
    principal: Principal = HANDLE,
    done_: Annotated[str | None, Query(alias="done", max_length=20)] = None,
):
    with tenant_scope(request.app.state.db, principal) as session:
        sla, opened = complaints.read(session, principal, complaint_id)
    return page(
        request,
        Console.INSTITUTION,
        "console/complaint.html",
        title="Complaint",
        sla=sla,
        opened=opened,
        done=done(done_, DONE),
    )


@router.post(HOME + "/{complaint_id}/answer")
def answer(request: Request, complaint_id: UUID, principal: Principal = HANDLE):
    body = read_form(request, AnswerIn)
    with tenant_scope(request.app.state.db, principal) as session:
        complaints.answer(session, principal, complaint_id, body.answer)
    return RedirectResponse(f"{HOME}/{complaint_id}?done=answered", status_code=303)
