"""The worker's alert deliveries: the operators' mail and the signed webhook, one job each per new alert."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from bookwarden.core.config import get_settings
from bookwarden.db.session import Database, platform_session
from bookwarden.jobs.service import handler
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
