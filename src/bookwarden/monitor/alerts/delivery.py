"""How alerts leave the platform: mail to the operators and a signed webhook, each sent by a job (retried by the
queue with backoff, never in the engine's way).

The webhook is a JSON POST of the alert (monitor/alerts/service.py `as_json`). Its headers:

- `X-Bookwarden-Timestamp`: seconds since the epoch when this attempt was signed;
- `X-Bookwarden-Signature`: `sha256=` and the hex HMAC-SHA256, keyed by BOOKWARDEN_MONITOR_WEBHOOK_SECRET, of the
  timestamp, a full stop and the body's bytes. A receiver recomputes it, compares in constant time, and refuses a
  timestamp older than a few minutes (a replayed delivery);
- `X-Bookwarden-Delivery`: the alert's id (a retry carries the same one).

Any answer but 2xx, or none within the timeout, is a failed attempt, retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bookwarden.monitor.alerts.models import AlertSeverity

MAIL_JOB = "monitor.alert_mail"
WEBHOOK_JOB = "monitor.alert_webhook"
SIGNATURE_HEADER = "X-Bookwarden-Signature"
TIMESTAMP_HEADER = "X-Bookwarden-Timestamp"
DELIVERY_HEADER = "X-Bookwarden-Delivery"


class DeliverySettings(BaseSettings):
    """BOOKWARDEN_MONITOR_*: where alerts go."""

    model_config = SettingsConfigDict(env_prefix="BOOKWARDEN_MONITOR_", extra="ignore", hide_input_in_errors=True)

    mail_severity: AlertSeverity = Field(
        default=AlertSeverity.HIGH,
        description="alerts of this severity and above are mailed to BOOKWARDEN_OPERATOR_ALERT_EMAILS",
    )
    webhook_url: str | None = Field(default=None, description="an http(s) URL each new alert is POSTed to as JSON")
    webhook_secret: SecretStr | None = Field(default=None, description="the key of the webhook's HMAC-SHA256")
    webhook_timeout: float = Field(default=10.0, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("BOOKWARDEN_MONITOR_WEBHOOK_URL must be an http:// or https:// URL")
        return value or None

    def mails(self, severity: str) -> bool:
        return AlertSeverity(severity).rank >= self.mail_severity.rank


class WebhookFailed(Exception):
    """One webhook attempt failed (the job's attempt; retried). Names the status or error, never the body."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def post_webhook(settings: DeliverySettings, alert: dict[str, Any]) -> int:
    if settings.webhook_url is None:
        return 0
    if settings.webhook_secret is None:
        raise WebhookFailed("BOOKWARDEN_MONITOR_WEBHOOK_SECRET is not set: an unsigned alert is never sent")
    body = json.dumps(alert, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(  # noqa: S310 - the operators' configured http(s) URL, checked above
        settings.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(settings.webhook_secret.get_secret_value().encode(), timestamp, body),
            DELIVERY_HEADER: alert["id"],
            "User-Agent": "bookwarden-monitor",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.webhook_timeout) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        raise WebhookFailed(f"the webhook answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookFailed(f"the webhook could not be reached: {type(exc).__name__}") from None


def mail_body(alert: dict[str, Any]) -> tuple[str, str]:
    """Subject and text of the operators' mail about a new alert (ids, counts and addresses; no personal values
    beyond the source address and group the rule matched)."""
    subject = f"Bookwarden alert [{alert['severity']}]: {alert['title']}"
    lines = [
        f"{alert['title']} ({alert['rule']}), severity {alert['severity']}.",
        "",
        f"First seen: {alert['first_seen']}",
        f"Last seen:  {alert['last_seen']}",
        f"Events:     {alert['count']}",
    ]
    if alert["source_address"]:
        lines.append(f"Source:     {alert['source_address']}")
    if alert["institution_id"]:
        lines.append(f"Institution: {alert['institution_id']}")
    if alert["group"]:
        lines.append(f"Group:      {json.dumps(alert['group'], sort_keys=True)}")
    if alert["summary"]:
        lines += ["", alert["summary"]]
    lines += ["", f"Alert {alert['id']}: `bookwarden monitor alerts`, `bookwarden monitor ack {alert['id']}`."]
    return subject, "\n".join(lines)
