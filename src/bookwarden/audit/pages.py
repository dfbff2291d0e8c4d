"""The audit trail in the institution console: search, export, chain verification, and sign-in failures per
day. Each read is itself recorded in the trail it reads, as the API's are."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse

from bookwarden.audit import record as audit
from bookwarden.audit import search, signing, verify
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.routes import MAX_SEQ, _closing
from bookwarden.audit.search import EventQuery, ExportFormat
from bookwarden.core import charts
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires, tenant_scope

router = PageRouter()
READ = Depends(requires(Permission.AUDIT_READ))
VERIFY = Depends(requires(Permission.AUDIT_VERIFY))
HOME, EXPORT, CHAIN, FAILURES = (
    "/console/audit",
    "/console/audit/export",
    "/console/audit/chain",
    ("/console/audit/sign-in-failures"),
)
INST = Console.INSTITUTION
entry(INST, "Audit", "Search the trail", HOME, Permission.AUDIT_READ, "every action, who, when, from where; export it")
entry(INST, "Audit", "Sign-in failures", FAILURES, Permission.AUDIT_READ, "refused sign-ins per day, the last 30 days")
entry(INST, "Audit", "Verify the chain", CHAIN, Permission.AUDIT_VERIFY, "hashes, links and signed checkpoints")
PAGE_SIZE = 50
DAYS = 30


ACTION = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*\.?$")
Text = Annotated[str, Query(max_length=64)]


def _query(action: str, outcome: str, actor_id: str, since: str, until: str) -> EventQuery:
    """The filters of the search form (a blank field filters nothing), as the API's search takes them."""
    try:
        if action and not ACTION.match(action):
            raise ValueError("action: a name like role.granted, or a prefix ending in a dot")
        start = datetime.combine(date.fromisoformat(since), time(), tzinfo=UTC) if since else None
        # Whole days in UTC: "to" includes the day it names.
        end = datetime.combine(date.fromisoformat(until) + timedelta(days=1), time(), tzinfo=UTC) if until else None
        return EventQuery(
            actor_id=UUID(actor_id) if actor_id else None,
            action=action or None,
            outcome=Outcome(outcome) if outcome else None,
            since=start,
            until=end,
        )
    except ValueError as bad:
        raise InvalidInput(f"the search could not be read ({bad}); dates as YYYY-MM-DD, an actor as its id") from None


@router.get(HOME)
def search_page(
    request: Request,
    principal: Principal = READ,
    action: Text = "",
    outcome: Text = "",
    actor_id: Text = "",
    since: Annotated[str, Query(alias="from", max_length=10)] = "",
    until: Annotated[str, Query(alias="to", max_length=10)] = "",
    cursor: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
):
    query = _query(action, outcome, actor_id, since, until)
    with tenant_scope(request, principal) as session:
        found = search.search_recorded(session, principal, query, limit=PAGE_SIZE, cursor=cursor)
    filters = {"action": action, "outcome": outcome, "actor_id": actor_id, "from": since, "to": until}
    given = urlencode({k: v for k, v in filters.items() if v})
    return page(
        request,
        INST,
        "console/audit_search.html",
        title="Audit trail",
        events=found.events,
        next_cursor=found.next_cursor,
        filters=filters,
        given=given,
        outcomes=list(Outcome),
    )


@router.get(EXPORT, response_class=StreamingResponse)
def export(
    request: Request,
    principal: Principal = READ,
    action: Text = "",
    outcome: Text = "",
    actor_id: Text = "",
    since: Annotated[str, Query(alias="from", max_length=10)] = "",
    until: Annotated[str, Query(alias="to", max_length=10)] = "",
    format: Annotated[ExportFormat, Query()] = ExportFormat.CSV,
):
    """Every matching event as a file: the API's export (GET /api/v1/audit/events/export), recorded the same."""
    db = request.app.state.db
    query = _query(action, outcome, actor_id, since, until)
    chunks = search.export(db, lambda: tenant_scope(request, principal), query, format, audit.current())
    first = next(chunks)  # a refusal is still a page, before the 200 goes
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        _closing(first, chunks),
        media_type=search.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="audit-{principal.tenant_id}-{stamp}.{format.value}"'},
    )


@router.get(CHAIN)
def chain_page(request: Request, principal: Principal = VERIFY):
    return page(request, INST, "console/audit_chain.html", title="Verify the audit chain", report=None)


@router.post(CHAIN)
def verify_chain(request: Request, principal: Principal = VERIFY):
    """Check the whole chain now (it changes nothing but the trail, which records the check and its verdict)."""
    keys = signing.TrustedKeys(*signing.trusted_public_keys(request.app.state.settings))
    report = verify.verify_own_chain(request.app.state.db, principal, keys)
    return page(request, INST, "console/audit_chain.html", title="Verify the audit chain", report=report)


@router.get(FAILURES)
def sign_in_failures(request: Request, principal: Principal = READ):
    """Refused sign-ins to the institution's accounts per day (UTC), as an SVG chart and a table."""
    with tenant_scope(request, principal) as session:
        days = search.daily_counts(session, principal, Action.SIGN_IN_FAILED.value, DAYS)
    labels = [day.strftime("%m-%d") for day, _ in days]
    chart = charts.per_day("Sign-in failures per day (UTC)", labels, {"failures": [n for _, n in days]})
    return page(
        request,
        INST,
        "console/sign_in_failures.html",
        title="Sign-in failures",
        chart=chart,
        days=days,
        total=sum(n for _, n in days),
    )
