"""The privacy officers' queue of data-subject requests: due dates, a chart of open requests against their
deadlines, and each request's decision and fulfilment, through the services the API's routes call."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.api.deps import tenant_scope
from bookwarden.core.clock import db_now
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestState
from bookwarden.privacy.requests.routes import DenyIn, HoldIn
from bookwarden.privacy.requests.service import Decision, QueueView, RequestSummary
from bookwarden.web import charts
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
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
    with tenant_scope(_db(request), principal) as session:
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
    with tenant_scope(_db(request), principal) as session:
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
    with tenant_scope(_db(request), principal) as session:
        requests.decide(session, principal, request_id, Decision.APPROVE)
    return _back(request_id, "approve")


@router.post(HOME + "/{request_id}/deny")
def deny(request: Request, request_id: UUID, principal: Principal = HANDLE):
    body = read_form(request, DenyIn, decision="deny")
    with tenant_scope(_db(request), principal) as session:
        requests.decide(session, principal, request_id, Decision.DENY, body.reason)
    return _back(request_id, "deny")


@router.post(HOME + "/{request_id}/start")
def start(request: Request, request_id: UUID, principal: Principal = HANDLE):
    with tenant_scope(_db(request), principal) as session:
        requests.start(session, principal, request_id)
    return _back(request_id, "start")


@router.post(HOME + "/{request_id}/complete")
def complete(request: Request, request_id: UUID, principal: Principal = HANDLE):
    with tenant_scope(_db(request), principal) as session:
        requests.complete(session, principal, request_id)
    return _back(request_id, "complete")


@router.post(HOME + "/{request_id}/hold")
def hold(request: Request, request_id: UUID, principal: Principal = HANDLE):
    body = read_form(request, HoldIn)
    with tenant_scope(_db(request), principal) as session:
        requests.hold(session, principal, request_id, body.reason, body.until)
    return _back(request_id, "hold")


@router.post(HOME + "/{request_id}/resume")
def resume(request: Request, request_id: UUID, principal: Principal = HANDLE):
    with tenant_scope(_db(request), principal) as session:
        requests.resume(session, principal, request_id)
    return _back(request_id, "resume")
