"""The platform's own access log (BOOKWARDEN_ACCESS_LOG, written by api/access_log.py): one JSON object a request.

`{"time", "method", "route", "status", "client", "user_agent", "ms", "request_id"}`: the route is the template
(`/api/v1/patrons/{patron_id}`), never the path or the query string, which could hold a search term or a card
number. An event has `product: bookwarden`, `category: webserver` (so the web rules on user agents and statuses
apply) and `service: access`; `path` and `target` hold the template, `status` the answer.
"""

from __future__ import annotations

import json

from bookwarden.monitor.events import Event, LogSource, Outcome
from bookwarden.monitor.parse.jsonl import event_time
from bookwarden.monitor.parse.syslog import Unparsable

ACCESS = LogSource("bookwarden", "webserver", frozenset({"access"}))


def parse(line: str) -> Event:
    try:
        document = json.loads(line)
    except ValueError as exc:
        raise Unparsable(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or "route" not in document or "status" not in document:
        raise Unparsable("an access log line is a JSON object with at least time, route and status")
    try:
        status = int(document["status"])
    except (TypeError, ValueError):
        raise Unparsable(f"status {document['status']!r} is not a number") from None
    route = str(document["route"])
    method = str(document.get("method") or "")
    event = Event(
        time=event_time(document.get("time")),
        source=ACCESS,
        message=f"{method} {route} {status}",
        raw=line,
        program="bookwarden",
        source_address=_text(document.get("client")),
        outcome=Outcome.FAILURE if status >= 400 else Outcome.SUCCESS,
    )
    event.fields.update(
        method=method,
        path=route,
        route=route,
        target=route,
        status=status,
        user_agent=_text(document.get("user_agent")),
        duration_ms=document.get("ms"),
        request_id=_text(document.get("request_id")),
    )
    return event


def _text(value: object) -> str | None:
    return None if value is None else str(value)
