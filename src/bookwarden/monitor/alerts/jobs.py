"""The worker's alert duties: the operators' mail and the signed webhook, one job each per new alert; and the
daily forgetting of the addresses and groups of alerts quiet for 90 days (privacy/registry.py DEVICE_NETWORK)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import text

from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.monitor.alerts import delivery
from bookwarden.monitor.alerts.models import StoredAlert
from bookwarden.monitor.alerts.service import as_json
from bookwarden.notify.delivery import send_to_operators


def _alert(db: Database, payload: dict[str, Any]) -> dict[str, Any] | None:
    with platform_session(db) as session:
        stored = session.get(StoredAlert, UUID(payload["alert_id"]))
        return as_json(stored) if stored is not None else None


@handler(delivery.MAIL_JOB)
def _mail(db: Database, payload: dict[str, Any]) -> None:
    addresses = get_settings().operator_alert_addresses
    alert = _alert(db, payload)
    if not addresses or alert is None:
        return
    subject, body = delivery.mail_body(alert)
    send_to_operators(addresses, subject, body, f"alert-{alert['id']}")


@handler(delivery.WEBHOOK_JOB)
def _webhook(db: Database, payload: dict[str, Any]) -> None:
    alert = _alert(db, payload)
    if alert is not None:
        delivery.post_webhook(delivery.DeliverySettings(), alert)


# The registry's "security alerts: 90 days after their last event" (privacy/periods.py names this job).
FORGET_JOB = "monitor.forget_alert_addresses"
KEEP = timedelta(days=90)
log = structlog.get_logger()


def forget_addresses(db: Database, keep: timedelta = KEEP) -> int:
    """Alerts whose last event is older than `keep` lose their source address and group (the rule, counts and
    times stay, as the history of what happened); the group key becomes the alert's own, so nothing folds into it."""
    with platform_session(db) as session:
        forgotten = session.execute(
            text(
                "UPDATE monitor_alerts SET source_address = NULL, grouped = '{}'::jsonb, "
                "group_key = 'forgotten:' || id::text, updated_at = now() "
                "WHERE last_seen < now() - CAST(:keep AS interval) AND group_key NOT LIKE 'forgotten:%'"
            ),
            {"keep": f"{int(keep.total_seconds())} seconds"},
        ).rowcount
    if forgotten:
        log.info("monitor.alert_addresses_forgotten", count=forgotten)
    return forgotten


@handler(FORGET_JOB)
def _forget(db: Database, payload: dict[str, Any]) -> None:
    forget_addresses(db)


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, FORGET_JOB, FORGET_JOB, timedelta(days=1))
