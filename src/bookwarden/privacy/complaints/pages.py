"""The patron portal's complaints: file one, follow each against its deadlines.

The same service as POST and GET /api/v1/privacy/me/complaints (privacy/complaints/service.py
`register_own`, `own_complaints`); the acknowledgement is mailed at once, as from the API.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError
from bookwarden.core.principal import Principal
from bookwarden.privacy.complaints import service as complaints
from bookwarden.web.portal import PATRON, render_portal
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import tenant_scope

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
