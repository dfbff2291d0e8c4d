"""The alert store takes the host checks' findings (`monitor/host_events.py`).

File-integrity and rootcheck runs publish their findings as events; here each batch goes through the built-in rules
(as a log line would) and the alerts it raises are stored, grouped and delivered like any other, then told to the
alert subscribers. A fresh engine per batch: a finding is a detection, not part of a stream's correlation window.
"""

from __future__ import annotations

from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session
from bookwarden.monitor import host_events
from bookwarden.monitor.alerts import subscribers
from bookwarden.monitor.alerts.service import record_engine_alert
from bookwarden.monitor.engine import Engine
from bookwarden.monitor.events import Event
from bookwarden.monitor.sigma.load import builtin_paths, load


@host_events.register
def store_host_findings(db: Database, events: list[Event]) -> None:
    engine = Engine(load(builtin_paths(), get_settings().monitor_tuning))
    alerts = [alert for event in events for alert in engine.feed(event)] + engine.finish()
    if not alerts:
        return
    with platform_session(db) as session:
        recorded = [record_engine_alert(session, alert) for alert in alerts]
    subscribers.tell(db, recorded)
