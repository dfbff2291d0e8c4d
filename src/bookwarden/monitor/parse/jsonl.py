"""JSON lines: the platform's own events, in either shape it writes them.

- An audit bundle line (`bookwarden audit export`, OCSF 1.3 API Activity): the action is `api.operation`, the
  outcome `status_detail`, the time `time` (milliseconds), the peer `src_endpoint.ip`, the tenant
  `metadata.tenant_uid`, the actor `actor.user` (`actor_kind`, `actor_id`, and `grant_id` when an operator worked
  under a grant), the target `resources[0]` (`target_kind`, `target_id`); the hashed event's details
  (`unmapped.event.details`) become `details.*` fields.
- A flat event (what the platform's collectors emit): `time`, `action`, `outcome`, `source_address`, `user`,
  `tenant_id`, `actor_kind`, `actor_id`, `grant_id`, `target_kind`, `target_id` and any other keys, kept as fields
  (nested keys joined with dots).

Every such event has `product: bookwarden` and `service: audit`, so the built-in platform rules apply to it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bookwarden.monitor.events import Event, LogSource, Outcome
from bookwarden.monitor.parse.syslog import Unparsable

PLATFORM = LogSource("bookwarden", None, frozenset({"audit"}))
_OUTCOMES = {
    "succeeded": Outcome.SUCCESS,
    "success": Outcome.SUCCESS,
    "failed": Outcome.FAILURE,
    "failure": Outcome.FAILURE,
    "denied": Outcome.FAILURE,
}


def parse(line: str) -> Event:
    try:
        document = json.loads(line)
    except ValueError as exc:
        raise Unparsable(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Unparsable("a JSON line must hold an object")
    if "api" in document and "metadata" in document:
        return _from_bundle(line, document)
    return _from_flat(line, document)


def _from_bundle(line: str, document: dict[str, Any]) -> Event:
    fields = _flatten(document)
    event_document = document.get("unmapped", {}).get("event")
    details = event_document.get("details") if isinstance(event_document, dict) else None
    if isinstance(details, dict):
        fields.update(_flatten(details, "details."))
    action = fields.get("api.operation")
    fields["action"] = action
    fields["tenant_id"] = fields.get("metadata.tenant_uid")
    fields["actor_kind"] = fields.get("actor.user.type")
    fields["actor_id"] = fields.get("actor.user.uid")
    resources = document.get("resources") or [{}]
    fields["target_kind"], fields["target_id"] = resources[0].get("type"), resources[0].get("uid")
    grants = document.get("actor", {}).get("authorizations") or [{}]
    fields["grant_id"] = grants[0].get("policy", {}).get("uid")
    return Event(
        time=event_time(document.get("time")),
        source=PLATFORM,
        message=str(action),
        raw=line,
        user=fields.get("actor.user.uid"),
        source_address=fields.get("src_endpoint.ip"),
        outcome=_OUTCOMES.get(str(document.get("status_detail"))),
        fields=fields,
    )


def _from_flat(line: str, document: dict[str, Any]) -> Event:
    fields = _flatten(document)
    stamp = document.get("time", document.get("timestamp", document.get("occurred_at")))
    action = document.get("action", document.get("event"))
    fields["action"] = action
    return Event(
        time=event_time(stamp),
        source=PLATFORM,
        message=str(action),
        raw=line,
        user=_text(document.get("user")),
        source_address=_text(document.get("source_address")),
        outcome=_OUTCOMES.get(str(document.get("outcome"))),
        fields=fields,
    )


def event_time(stamp: Any) -> datetime:
    """A JSON event's time: epoch seconds or milliseconds, or ISO 8601 (UTC when it names no zone)."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        # Milliseconds past about 2001 in seconds; OCSF writes milliseconds.
        return datetime.fromtimestamp(stamp / 1000 if stamp > 10**11 else stamp, tz=UTC)
    if isinstance(stamp, str):
        try:
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise Unparsable(f"bad time {stamp!r}") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise Unparsable("no time: a JSON event needs `time`, `timestamp` or `occurred_at`")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
