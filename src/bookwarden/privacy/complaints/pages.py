"""The patron portal's complaints: file one, follow each against its deadlines.

The same service as POST and GET /api/v1/privacy/me/complaints (privacy/complaints/service.py
`register_own`, `own_complaints`); the acknowledgement is mailed at once, as from the API.

Complaints in the institution console: the SLA view, one complaint, its answer (mailed to the complainant).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.complaints.routes import AnswerIn
from bookwarden.privacy.complaints.service import SlaState
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.portal import PATRON, render_portal
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()


def _page(request, session, principal, status_code=200, **context):
    mine = complaints.own_complaints(session, principal)
    context = {"error": "", "subject": "", "body": "", "done": "", **context}
    return render_portal(
        request, session, principal, "portal/complaints.html", status_code=status_code, title="Complaints",
        complaints=mine, **context,
    )  # fmt: skip


@router.get("/portal/complaints")
def my_complaints(request: Request, principal: Principal = Depends(PATRON)):
    done = (
        "Your complaint is registered; an acknowledgement is on its way to you."
        if "filed" in request.query_params
        else ""
    )
    with tenant_scope(request, principal) as session:
        return _page(request, session, principal, done=done)


@router.post("/portal/complaints")
def file_complaint(request: Request, principal: Principal = Depends(PATRON)):
    fields = form(request)
    subject, body = fields.get("subject", "").strip()[:200], fields.get("body", "").strip()[:10_000]
    error = "" if subject and body else "say what the complaint is about, and what happened"
    if not error:
        try:
            with tenant_scope(request, principal) as session:
                complaints.register_own(session, principal, subject=subject, body=body)
        except BookwardenError as refused:
            error = refused.detail
    if error:
        with tenant_scope(request, principal) as session:
            return _page(request, session, principal, status_code=422, error=error, subject=subject, body=body)
    return RedirectResponse("/portal/complaints?filed", status_code=303)


# -- the institution and operator consoles ---------------------------------------------------------
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
    with tenant_scope(request, principal) as session:
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
    with tenant_scope(request, principal) as session:
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
    with tenant_scope(request, principal) as session:
        complaints.answer(session, principal, complaint_id, body.answer)
    return RedirectResponse(f"{HOME}/{complaint_id}?done=answered", status_code=303)
