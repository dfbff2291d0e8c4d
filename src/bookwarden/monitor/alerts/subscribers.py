"""Who hears of each stored alert: `on_alert(callback)`, called as `callback(db, recorded)` after it is recorded.

Active response subscribes to act on an address or an account; incidents to promote an alert. Callbacks run after
the alert's transaction committed, in the process that stored it, one after another; a callback that fails is
logged and the others still run (an alert is never lost to a subscriber's bug: it is stored already).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from bookwarden.db.session import Database
    from bookwarden.monitor.alerts.service import Recorded

Callback = Callable[["Database", "Recorded"], None]
_callbacks: list[Callback] = []
log = structlog.get_logger()


def on_alert(callback: Callback) -> Callback:
    """Register `callback` (once, whatever the imports); usable as a decorator."""
    if callback not in _callbacks:
        _callbacks.append(callback)
    return callback


def tell(db: Database, recorded: list[Recorded]) -> None:
    """Call every callback with each alert just recorded (after commit); `db` for the transactions they open."""
    for item in recorded:
        for callback in list(_callbacks):
            try:
                callback(db, item)
            except Exception as exc:
                log.error(
                    "monitor.alert_callback_failed",
                    callback=getattr(callback, "__qualname__", "?"),
                    alert_id=str(item.alert.id),
                    error_type=type(exc).__name__,
                )
