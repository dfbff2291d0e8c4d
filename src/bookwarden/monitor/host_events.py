"""Where the host checks (file integrity, rootcheck) hand the events of their findings.

A registry, filled by whatever stores and delivers alerts: `register(sink)` with `sink(db, events)`. The checks'
jobs call `publish(db, events)` after each run. With no sink registered the findings are still kept (each run's
`host_scans` row and its audit event say what was found) and a warning is logged, so nothing is lost silently.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from bookwarden.db.session import Database
from bookwarden.monitor.events import Event

Sink = Callable[[Database, list[Event]], None]
_sinks: list[Sink] = []
log = structlog.get_logger()


def register(sink: Sink) -> Sink:
    if sink not in _sinks:
        _sinks.append(sink)
    return sink


def publish(db: Database, events: list[Event]) -> None:
    if not events:
        return
    if not _sinks:
        log.warning("host_findings_not_delivered", events=len(events), reason="no alert sink is registered")
        return
    for sink in _sinks:
        sink(db, events)
