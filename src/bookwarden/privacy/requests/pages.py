"""The patron portal's requests: ask for a copy of my data, its erasure, a correction, a restriction or an
objection, and follow each one against its due date.

The same service as POST and GET /api/v1/privacy/me/requests (privacy/requests/service.py `register_own`,
`own_requests`): the signed-in patron is the actor and their sign-in verified who asks. The copy (an
access or portability request) is built once the institution carries the request out; its download
link is mailed to the patron, as the API's does.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError
from bookwarden.core.principal import Principal
from bookwarden.library import service as library
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.web.portal import PATRON, render_portal
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import tenant_scope

router = PageRouter()
# What each kind asks for, in the patron's words (the form's choices and the list's column).
ASKS = {
    RequestKind.ACCESS: "A copy of my data (a ZIP file to download)",
    RequestKind.PORTABILITY: "My data in a machine-readable form, to take elsewhere",
    RequestKind.ERASURE: "Erase my data and close my account",
    RequestKind.RESTRICTION: "Stop changes to my data while something is sorted out",
    RequestKind.OBJECTION: "Object to my data being shared with third parties",
}
ASKED = {
    "erasure": "Your erasure request is received. Once it is carried out you can no longer sign in.",
    "rectification": "Your correction request is received.",
}
# The patron fields a correction may name, with their labels (PatronUpdate's personal fields).
CORRECTABLE = {
    "name": "Name",
    "email": "Email",
    "phone": "Phone",
    "postal_address": "Postal address",
    "institutional_id": "Institutional id",
    "affiliation": "Affiliation",
    "birth_date": "Date of birth",
    "barcode": "Library card",
}


def _page(request: Request, session, principal: Principal, status_code: int = 200, **context):
    own = requests.own_requests(session, principal)
    return render_portal(
        request, session, principal, "portal/requests.html", status_code=status_code, title="My requests",
        requests=own, asks=ASKS, error=context.pop("error", ""), **context,
    )  # fmt: skip


@router.get("/portal/requests")
def my_requests(request: Request, principal: Principal = Depends(PATRON)):
    asked = next((ASKED.get(kind, "Your request is received.") for kind in ASKED if kind in request.query_params), "")
    if not asked and "asked" in request.query_params:
        asked = "Your request is received. We answer by its due date, and mail you when it is done."
    with tenant_scope(request, principal) as session:
        return _page(request, session, principal, done=asked)


@router.post("/portal/requests")
def ask(request: Request, principal: Principal = Depends(PATRON)):
    fields = form(request)
    try:
        kind = RequestKind(fields.get("kind", ""))
    except ValueError:
        kind = None
    if kind not in ASKS:
        with tenant_scope(request, principal) as session:
            return _page(request, session, principal, status_code=422, error="choose what you ask for")
    scope = "third_party_disclosure" if kind is RequestKind.OBJECTION else None
    try:
        with tenant_scope(request, principal) as session:
            requests.register_own(session, principal, kind, objection_scope=scope)
    except BookwardenError as refused:
        with tenant_scope(request, principal) as session:
            return _page(request, session, principal, status_code=refused.status, error=refused.detail)
    flag = kind.value if kind.value in ASKED else "asked"
    return RedirectResponse(f"/portal/requests?{flag}", status_code=303)


@router.get("/portal/correct")
def correct_form(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        mine = library.own_record(session, principal)
        return render_portal(
            request, session, principal, "portal/correct.html", title="Correct my record",
            fields=CORRECTABLE, current=mine.patron.model_dump(), given={}, error="",
        )  # fmt: skip


@router.post("/portal/correct")
def correct(request: Request, principal: Principal = Depends(PATRON)):
    """Ask for a correction of the fields the patron changed (a rectification request, decided by the library)."""
    fields = form(request)
    given = {name: fields.get(name, "").strip() for name in CORRECTABLE}
    with tenant_scope(request, principal) as session:
        current = library.own_record(session, principal).patron.model_dump()
    changed = {name: value for name, value in given.items() if value and value != str(current.get(name) or "")}
    error = "" if changed else "change at least one field to say what is wrong"
    if not error:
        try:
            with tenant_scope(request, principal) as session:
                requests.register_own(session, principal, RequestKind.RECTIFICATION, corrections=changed)
        except BookwardenError as refused:
            error = refused.detail
    if error:
        with tenant_scope(request, principal) as session:
            return render_portal(
                request, session, principal, "portal/correct.html", status_code=422, title="Correct my record",
                fields=CORRECTABLE, current=current, given=given, error=error,
            )  # fmt: skip
    return RedirectResponse("/portal/requests?rectification", status_code=303)
