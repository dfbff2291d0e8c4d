"""The patron portal's requests: ask for a copy of my data, its erasure, a correction, a restriction or an
objection, and follow each one against its due date.

The same service as POST and GET /api/v1/privacy/me/requests (privacy/requests/service.py `register_own`,
`own_requests`): the signed-in patron is the actor and their sign-in verified who asks. The copy (an
access or portability request) is built once the institution carries the request out; its download
link is mailed to the patron, as the API's does.

The privacy officers' queue of data-subject requests: due dates, a chart of open requests against their
deadlines, and each request's decision and fulfilment, through the services the API's routes call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.core import charts
from bookwarden.core.clock import db_now
from bookwarden.core.errors import BookwardenError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.library import service as library
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind, RequestState
from bookwarden.privacy.requests.routes import DenyIn, HoldIn
from bookwarden.privacy.requests.service import Decision, QueueView, RequestSummary
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.portal import PATRON, render_portal
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import requires, tenant_scope

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


# -- the institution and operator consoles ---------------------------------------------------------
HANDLE = Depends(requires(Permission.PRIVACY_REQUESTS_HANDLE))
Done = Annotated[str | None, Query(alias="done", max_length=20)]
HOME = "/console/privacy/requests"
entry(
    Console.INSTITUTION,
    "Privacy",
    "Data-subject requests",
    HOME,
    Permission.PRIVACY_REQUESTS_HANDLE,
    "the queue against its deadlines: decide, carry out, hold",
)

DONE = {
    "approve": "Approved. A staff-initiated erasure waits for a second officer (Approvals).",
    "deny": "Denied; the patron is told why.",
    "start": "Marked in progress.",
    "complete": "Carried out and closed.",
    "hold": "On legal hold: its deadline is paused until lifted.",
    "resume": "Hold lifted: the request is back where it was.",
}
# Where a due date falls, from today (days): the chart's bars, in order.
BUCKETS = (
    ("overdue", None, 0),
    ("due in a week", 0, 7),
    ("in 2 weeks", 7, 14),
    ("in 3 weeks", 14, 21),
    ("in 4 weeks", 21, 28),
    ("later", 28, None),
)
OPEN_STATES = (
    RequestState.RECEIVED,
    RequestState.IDENTITY_VERIFIED,
    RequestState.APPROVED,
    RequestState.IN_PROGRESS,
    RequestState.ON_LEGAL_HOLD,
)


def _db(request: Request):
    return request.app.state.db


def deadline_chart(found: list[RequestSummary], now: datetime) -> tuple[str, list[tuple[str, dict[str, int]]]] | None:
    """Open requests by where their due date falls, stacked by state: the SVG and the same numbers as a table."""
    open_ = [r for r in found if r.state in OPEN_STATES]
    if not open_:
        return None
    counts = {label: dict.fromkeys((s.value for s in OPEN_STATES), 0) for label, _, _ in BUCKETS}
    for r in open_:
        days = (r.due_at - now).total_seconds() / 86400
        for label, least, most in BUCKETS:
            if (least is None or days >= least) and (most is None or days < most):
                counts[label][r.state.value] += 1
                break
    labels = [label for label, _, _ in BUCKETS]
    series = {
        state.value.replace("_", " "): [counts[label][state.value] for label in labels]
        for state in OPEN_STATES
        if any(counts[label][state.value] for label in labels)
    }
    svg = charts.bars("Open requests by due date", labels, series, stacked=True)
    return svg, [(label, counts[label]) for label in labels]


@router.get(HOME)
def queue(
    request: Request,
    principal: Principal = HANDLE,
    done_: Done = None,
    view: Annotated[QueueView, Query()] = QueueView.OPEN,
):
    """The queue, the most urgent first, and the chart of open requests against their deadlines."""
    with tenant_scope(request, principal) as session:
        found = requests.queue(session, principal, view)
        now = db_now(session)
    return page(
        request,
        Console.INSTITUTION,
        "console/privacy_requests.html",
        title="Data-subject requests",
        rows=found,
        view=view,
        views=list(QueueView),
        chart=deadline_chart(found, now),
        states=[s.value for s in OPEN_STATES],
        done=done(done_, DONE),
    )


@router.get(HOME + "/{request_id}")
def read_request(request: Request, request_id: UUID, principal: Principal = HANDLE, done_: Done = None):
    with tenant_scope(request, principal) as session:
        found, opened = requests.read(session, principal, request_id)
    return page(
        request,
        Console.INSTITUTION,
        "console/privacy_request.html",
        title=f"Request: {found.kind}",
        r=found,
        opened=opened,
        done=done(done_, DONE),
    )


def _back(request_id: UUID, what: str) -> RedirectResponse:
    return RedirectResponse(f"{HOME}/{request_id}?done={what}", status_code=303)


@router.post(HOME + "/{request_id}/approve")
def approve(request: Request, request_id: UUID, principal: Principal = HANDLE):
    with tenant_scope(request, principal) as session:
        requests.decide(session, principal, request_id, Decision.APPROVE)
    return _back(request_id, "approve")


@router.post(HOME + "/{request_id}/deny")
def deny(request: Request, request_id: UUID, principal: Principal = HANDLE):
    body = read_form(request, DenyIn, decision="deny")
    with tenant_scope(request, principal) as session:
        requests.decide(session, principal, request_id, Decision.DENY, body.reason)
    return _back(request_id, "deny")


@router.post(HOME + "/{request_id}/start")
def start(request: Request, request_id: UUID, principal: Principal = HANDLE):
    with tenant_scope(request, principal) as session:
        requests.start(session, principal, request_id)
    return _back(request_id, "start")


@router.post(HOME + "/{request_id}/complete")
def complete(request: Request, request_id: UUID, principal: Principal = HANDLE):
    with tenant_scope(request, principal) as session:
        requests.complete(session, principal, request_id)
    return _back(request_id, "complete")


@router.post(HOME + "/{request_id}/hold")
def hold(request: Request, request_id: UUID, principal: Principal = HANDLE):
    body = read_form(request, HoldIn)
    with tenant_scope(request, principal) as session:
        requests.hold(session, principal, request_id, body.reason, body.until)
    return _back(request_id, "hold")


@router.post(HOME + "/{request_id}/resume")
def resume(request: Request, request_id: UUID, principal: Principal = HANDLE):
    with tenant_scope(request, principal) as session:
        requests.resume(session, principal, request_id)
    return _back(request_id, "resume")
