"""Active response hears of every stored alert (`monitor/alerts/subscribers.py`): the jails act on the engine's alert
behind it. An alert raised outside the rules (a failed drill) names no rule a jail acts on and is left alone.

One `Responder` per process, made at the first alert: the jails and allowlist are read from the settings once.
"""

from __future__ import annotations

from functools import cache

from bookwarden.db.session import Database
from bookwarden.monitor.alerts.service import Recorded
from bookwarden.monitor.alerts.subscribers import on_alert
from bookwarden.monitor.response.jails import Responder


@cache
def responder() -> Responder:
    return Responder()


@on_alert
def respond_to_alert(db: Database, recorded: Recorded) -> None:
    if recorded.source is not None:
        responder().respond(db, recorded.source)
