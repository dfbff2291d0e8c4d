"""Alert delivery: mail to the operators through a real SMTP server above the configured severity, and a signed
webhook to a local receiver, retried by the job queue when the receiver fails."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from sqlalchemy import select

from bookwarden.core.config import get_settings
from bookwarden.db.session import platform_session
from bookwarden.jobs.models import Job, JobStatus
from bookwarden.jobs.worker import Worker
from bookwarden.monitor.alerts import service
from bookwarden.monitor.alerts.delivery import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_JOB,
    DeliverySettings,
)
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture

SECRET = "a-webhook-secret-of-the-operators"


class Receiver(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = type(self).answers.pop(0) if type(self).answers else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.answers, Receiver.received = [], []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _run_jobs(db) -> None:
    worker = Worker(db, "alerts")
    while worker.run_one():
        pass


def test_new_alerts_at_or_above_the_threshold_are_mailed_to_the_operators(db, smtp_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("BOOKWARDEN_OPERATOR_ALERT_EMAILS", "ops@platform.example, ciso@platform.example")
    get_settings.cache_clear()
    settings = DeliverySettings(mail_severity="high")
    try:
        with platform_session(db) as session:
            high = service.raise_alert(
                session,
                rule="audit.verification_failed",
                title="Audit verification failed",
                severity="critical",
                summary="chain 0 broken at seq 12",
                settings=settings,
            ).alert
            service.raise_alert(session, rule="r.medium", title="Medium matter", severity="medium", settings=settings)
        _run_jobs(db)
    finally:
        get_settings.cache_clear()

    [mail] = smtp_server.messages
    assert sorted(mail.recipients) == ["ciso@platform.example", "ops@platform.example"]
    assert mail.message["Subject"] == "Bookwarden alert [critical]: Audit verification failed"
    body = mail.message.get_content()
    assert str(high.id) in body and "chain 0 broken at seq 12" in body
    assert mail.message["Message-ID"].startswith(f"<alert-{high.id}@")


def test_the_webhook_is_signed_and_retried_until_the_receiver_takes_it(db, receiver, monkeypatch):
    settings = DeliverySettings(webhook_url=f"http://127.0.0.1:{receiver.server_port}/alerts", webhook_secret=SECRET)
    Receiver.answers = [500]  # the receiver fails once
    with platform_session(db) as session:
        stored = service.raise_alert(
            session, rule="r.hook", title="Hooked", severity="low", source_address="192.0.2.5", settings=settings
        ).alert

    monkeypatch.setenv("BOOKWARDEN_MONITOR_WEBHOOK_URL", settings.webhook_url)  # what the worker reads
    monkeypatch.setenv("BOOKWARDEN_MONITOR_WEBHOOK_SECRET", SECRET)
    _run_jobs(db)  # the first attempt fails: the job waits for its retry
    with platform_session(db) as session:
        job = session.scalars(select(Job).where(Job.kind == WEBHOOK_JOB)).one()
        assert job.status == JobStatus.QUEUED and job.attempts == 1 and "500" in job.last_error
        job.run_at = job.run_at.replace(year=2000)  # its backoff is over
    _run_jobs(db)

    assert len(Receiver.received) == 2
    headers, body = Receiver.received[-1]
    expected = hmac.new(SECRET.encode(), headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], f"sha256={expected}")
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 60
    assert headers[DELIVERY_HEADER] == str(stored.id)
    alert = json.loads(body)
    assert (alert["id"], alert["rule"], alert["source_address"], alert["count"]) == (
        str(stored.id),
        "r.hook",
        "192.0.2.5",
        1,
    )
    # A forged body does not verify under the signature sent.
    forged = body.replace(b"192.0.2.5", b"192.0.2.6")
    assert (
        hmac.new(SECRET.encode(), headers[TIMESTAMP_HEADER].encode() + b"." + forged, hashlib.sha256).hexdigest()
        != expected
    )


def test_without_a_secret_no_unsigned_webhook_leaves(db, receiver):
    from bookwarden.monitor.alerts.delivery import WebhookFailed, post_webhook

    settings = DeliverySettings(webhook_url=f"http://127.0.0.1:{receiver.server_port}/alerts", webhook_secret=None)
    with pytest.raises(WebhookFailed, match="unsigned"):
        post_webhook(settings, {"id": "x"})
    assert Receiver.received == []
