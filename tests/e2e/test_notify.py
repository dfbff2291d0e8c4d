"""Outbound mail: queued with the business change, stored encrypted, delivered by a worker to a
real SMTP server, retried through outages, never sent twice, never injectable, never logged."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from pydantic import ValidationError
from sqlalchemy import delete, func, select, text, update
from structlog.testing import capture_logs

from bookwarden.core.errors import InvalidInput
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.jobs.models import Job, JobSchedule, JobStatus
from bookwarden.jobs.service import describe_error
from bookwarden.jobs.worker import Worker
from bookwarden.notify import delivery, service
from bookwarden.notify import jobs as notify_jobs
from bookwarden.notify.models import MailCategory, OutboxMessage, OutboxStatus
from bookwarden.tenancy import service as tenancy

ADDRESS = "zoe.patron@alpha.example.org"
SUBJECT = "Your privacy request code"
CONTEXT = {
    "recipient_name": "Zoë Patron",
    "message": "Your code is 482-113. Fines & fees are unchanged.",
    "institution": "Alpha University",
}
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://alpha.example.org/unsubscribe/opaque-token-1>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


# -- a real SMTP server ----------------------------------------------------------------------


@dataclass
class ReceivedMail:
    message: EmailMessage
    recipients: list[str]
    sender: str


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1: keeps every mail it accepts; refuses the addresses in `refused`
    with a 550 that quotes them, as real servers do."""

    port: int
    host: str = "127.0.0.1"
    messages: list[ReceivedMail] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    # (username, password) the server demands before accepting mail; None: no login.
    login: tuple[str, str] | None = None
    logins: list[str] = field(default_factory=list)
    _controller: Controller | None = None

    def start(self) -> None:
        # A fresh controller each time: "the server is back" means a new listener on the same port.
        options = {}
        if self.login is not None:
            # Plain-text AUTH is fine on loopback; production uses STARTTLS.
            options = {"auth_required": True, "auth_require_tls": False, "authenticator": self._authenticate}
        self._controller = Controller(self, hostname=self.host, port=self.port, **options)
        self._controller.start()

    def require_login(self, username: str, password: str) -> None:
        self.stop()
        self.login = (username, password)
        self.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        given = (auth_data.login.decode(), auth_data.password.decode())
        if given == self.login:
            self.logins.append(given[0])
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(ReceivedMail(parsed, list(envelope.rcpt_tos), envelope.mail_from))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(monkeypatch):
    server = SmtpServer(port=free_port())
    server.start()
    monkeypatch.setenv("BOOKWARDEN_SMTP_HOST", server.host)
    monkeypatch.setenv("BOOKWARDEN_SMTP_PORT", str(server.port))
    yield server
    server.stop()


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def committed_tenant(committed_db, home):
    with platform_session(committed_db) as session:
        return tenancy.create_tenant(session, committed_db.keyring, home, "mail-alpha", "Alpha University")


def queue(db, tenant_id, **overrides) -> uuid.UUID:
    arguments = {
        "to": ADDRESS,
        "subject": SUBJECT,
        "template": "generic.txt",
        "context": CONTEXT,
        "category": MailCategory.SERVICE,
        **overrides,
    }
    with tenant_session(db, tenant_id) as session:
        return service.queue_mail(session, **arguments).id


def stored(db, tenant_id, message_id) -> OutboxMessage:
    with tenant_session(db, tenant_id) as session:
        return session.get(OutboxMessage, (tenant_id, message_id))


def outbox_count(db, tenant_id) -> int:
    with tenant_session(db, tenant_id) as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage))


def delivery_jobs(db) -> list[Job]:
    with platform_session(db) as session:
        return list(session.scalars(select(Job).where(Job.kind == service.DELIVER).order_by(Job.id)))


def make_due(db) -> None:
    """Skip the backoff: every waiting job becomes due now."""
    with platform_session(db) as session:
        session.execute(
            update(Job).where(Job.status == JobStatus.QUEUED).values(run_at=func.now() - timedelta(seconds=1))
        )


def run_until_idle(db) -> int:
    worker, ran = Worker(db, "t"), 0
    while worker.run_one():
        ran += 1
        assert ran < 50, "the queue never drained"
    return ran


def payload_of(tenant_id, message_id) -> dict[str, str]:
    return {"tenant_id": str(tenant_id), "message_id": str(message_id)}


# -- delivery --------------------------------------------------------------------------------


def test_a_queued_mail_arrives_rendered_with_its_headers(committed_db, committed_tenant, smtp_server, monkeypatch):
    monkeypatch.setenv("BOOKWARDEN_SMTP_FROM", "Alpha Library <library@alpha.example.org>")
    # Optional mail (with its one-click unsubscribe) is tested end to end in tests/privacy/test_unsubscribe.py.
    headers = {"List-Id": "<notices.alpha.example.org>"}
    message_id = queue(committed_db, committed_tenant.id, category=MailCategory.SERVICE, headers=headers)

    assert Worker(committed_db, "t").run_one() is True

    [mail] = smtp_server.messages
    assert mail.recipients == [ADDRESS]
    assert mail.sender == "library@alpha.example.org"
    got = mail.message
    assert (got["To"], got["Subject"], got["From"]) == (ADDRESS, SUBJECT, "Alpha Library <library@alpha.example.org>")
    body = got.get_content()
    # Plain text: not HTML-escaped, non-ASCII intact.
    assert "Hello Zoë Patron," in body
    assert "Fines & fees are unchanged." in body
    assert "Alpha University, through Bookwarden" in body
    assert got["List-Id"] == "<notices.alpha.example.org>"
    assert got["List-Unsubscribe"] is None
    assert "This is a service message: it cannot be unsubscribed from, because" in body
    assert got["Auto-Submitted"] == "auto-generated"
    assert got["Date"] is not None
    assert got["Message-ID"] == f"<{message_id}@alpha.example.org>"

    row = stored(committed_db, committed_tenant.id, message_id)
    assert (row.status, row.attempts, row.message_id) == (OutboxStatus.SENT, 1, got["Message-ID"])
    assert row.sent_at is not None
    [job] = delivery_jobs(committed_db)
    assert job.status is JobStatus.SUCCEEDED


def test_the_stored_row_and_job_hold_no_plaintext(committed_db, committed_tenant, owner_conn):
    message_id = queue(committed_db, committed_tenant.id)

    to_address, subject, body, headers = owner_conn.execute(
        "SELECT to_address, subject, body, headers::text FROM outbox WHERE id = %s", (message_id,)
    ).fetchone()
    raw = bytes(to_address) + bytes(subject) + bytes(body) + headers.encode()
    for plaintext in (ADDRESS, "zoe.patron", SUBJECT, "privacy request", "482-113", "Zoë", "Hello"):
        assert plaintext.encode() not in raw, plaintext
    [job] = delivery_jobs(committed_db)
    assert job.payload == payload_of(committed_tenant.id, message_id)  # ids only


def test_nothing_is_queued_when_the_business_transaction_rolls_back(db, tenant):
    with pytest.raises(RuntimeError), tenant_session(db, tenant.id) as session:
        service.queue_mail(
            session, to=ADDRESS, subject=SUBJECT, template="generic.txt", context=CONTEXT, category="security"
        )
        raise RuntimeError("the role change that caused the notice failed")

    assert outbox_count(db, tenant.id) == 0
    assert delivery_jobs(db) == []


def test_a_second_run_of_the_same_job_does_not_send_again(committed_db, committed_tenant, smtp_server):
    message_id = queue(committed_db, committed_tenant.id)
    assert Worker(committed_db, "t").run_one() is True

    # The job runs again, as when a worker that outlived its lease is replaced.
    with platform_session(committed_db) as session:
        session.execute(update(Job).values(status=JobStatus.QUEUED, run_at=func.now(), finished_at=None))
    assert Worker(committed_db, "t").run_one() is True
    delivery.deliver(committed_db, payload_of(committed_tenant.id, message_id))

    assert len(smtp_server.messages) == 1
    assert stored(committed_db, committed_tenant.id, message_id).attempts == 1


def test_a_run_that_finds_the_message_in_another_runs_hands_leaves_it_alone(
    committed_db, committed_tenant, smtp_server
):
    message_id = queue(committed_db, committed_tenant.id)

    with tenant_session(committed_db, committed_tenant.id) as session:
        session.scalars(select(OutboxMessage).with_for_update()).one()  # another run is sending it
        delivery.deliver(committed_db, payload_of(committed_tenant.id, message_id))
        assert smtp_server.messages == []

    assert Worker(committed_db, "t").run_one() is True
    assert len(smtp_server.messages) == 1


def test_an_smtp_outage_is_retried_with_backoff_and_the_mail_delivered_after(
    committed_db, committed_tenant, smtp_server
):
    smtp_server.stop()
    message_id = queue(committed_db, committed_tenant.id)
    worker = Worker(committed_db, "t")

    assert worker.run_one() is True
    row = stored(committed_db, committed_tenant.id, message_id)
    assert (row.status, row.attempts) == (OutboxStatus.QUEUED, 1)
    assert row.last_error.startswith("ConnectionRefusedError")
    [job] = delivery_jobs(committed_db)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert "ConnectionRefusedError" in job.last_error
    assert worker.run_one() is False  # waiting out the backoff

    smtp_server.start()
    make_due(committed_db)
    assert worker.run_one() is True

    assert [m.recipients for m in smtp_server.messages] == [[ADDRESS]]
    row = stored(committed_db, committed_tenant.id, message_id)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 2)


def test_after_the_last_attempt_the_message_is_failed(committed_db, committed_tenant, monkeypatch):
    monkeypatch.setenv("BOOKWARDEN_SMTP_PORT", str(free_port()))  # nothing listens there
    message_id = queue(committed_db, committed_tenant.id)
    worker = Worker(committed_db, "t")

    for _ in range(service.MAX_DELIVERY_ATTEMPTS):
        make_due(committed_db)
        assert worker.run_one() is True

    row = stored(committed_db, committed_tenant.id, message_id)
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, service.MAX_DELIVERY_ATTEMPTS)
    assert row.last_error.startswith(f"gave up after {service.MAX_DELIVERY_ATTEMPTS} attempts: ConnectionRefusedError")
    [job] = delivery_jobs(committed_db)
    assert (job.status, job.attempts) == (JobStatus.FAILED, service.MAX_DELIVERY_ATTEMPTS)
    make_due(committed_db)
    assert worker.run_one() is False
    delivery.sweep(committed_db, {})
    assert len(delivery_jobs(committed_db)) == 1  # a failed message is not swept back in


def test_a_recipient_the_server_refuses_fails_at_once_and_the_error_does_not_name_them(
    committed_db, committed_tenant, smtp_server
):
    smtp_server.refused.add(ADDRESS)
    message_id = queue(committed_db, committed_tenant.id)

    assert Worker(committed_db, "t").run_one() is True

    row = stored(committed_db, committed_tenant.id, message_id)
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 1)
    assert row.last_error == "refused: recipient refused, SMTP 550"
    [job] = delivery_jobs(committed_db)
    assert job.status is JobStatus.SUCCEEDED  # the message is settled; retrying cannot help
    assert smtp_server.messages == []


def test_a_mail_queued_to_be_forgotten_leaves_no_row_once_sent(committed_db, committed_tenant, smtp_server):
    kept = queue(committed_db, committed_tenant.id)
    forgotten = queue(committed_db, committed_tenant.id, forget_when_settled=True)
    assert stored(committed_db, committed_tenant.id, forgotten).status is OutboxStatus.QUEUED  # kept until settled

    assert run_until_idle(committed_db) == 2

    assert [m.recipients for m in smtp_server.messages] == [[ADDRESS], [ADDRESS]]
    assert stored(committed_db, committed_tenant.id, forgotten) is None
    assert stored(committed_db, committed_tenant.id, kept).status is OutboxStatus.SENT
    [job, _] = delivery_jobs(committed_db)
    assert job.status is JobStatus.SUCCEEDED


def test_a_mail_queued_to_be_forgotten_leaves_no_row_once_given_up(committed_db, committed_tenant, smtp_server):
    smtp_server.refused.add(ADDRESS)
    forgotten = queue(committed_db, committed_tenant.id, forget_when_settled=True)

    assert Worker(committed_db, "t").run_one() is True

    assert stored(committed_db, committed_tenant.id, forgotten) is None
    assert outbox_count(committed_db, committed_tenant.id) == 0
    delivery.sweep(committed_db, {})
    assert len(delivery_jobs(committed_db)) == 1  # nothing left for the sweep to send again


def test_a_message_whose_ciphertext_was_moved_is_not_sent(committed_db, committed_tenant, smtp_server):
    tampered = queue(committed_db, committed_tenant.id, to="attacker@evil.example.org")
    intact = queue(committed_db, committed_tenant.id)
    with tenant_session(committed_db, committed_tenant.id) as session:
        victim = session.get(OutboxMessage, (committed_tenant.id, intact))
        session.execute(update(OutboxMessage).where(OutboxMessage.id == tampered).values(body=victim.body))

    run_until_idle(committed_db)

    assert [m.recipients for m in smtp_server.messages] == [[ADDRESS]]
    row = stored(committed_db, committed_tenant.id, tampered)
    assert row.status is OutboxStatus.FAILED
    assert row.last_error == "undeliverable: stored ciphertext failed authentication: altered outside Bookwarden"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_the_configured_credentials_log_in_to_the_server(committed_db, committed_tenant, smtp_server, monkeypatch):
    smtp_server.require_login("relay-user", "relay-pass")
    message_id = queue(committed_db, committed_tenant.id)
    worker = Worker(committed_db, "t")

    assert worker.run_one() is True
    assert smtp_server.messages == []
    # A login problem is the operator's to fix, not the message's fault: it stays queued for a retry.
    row = stored(committed_db, committed_tenant.id, message_id)
    assert (row.status, row.last_error) == (OutboxStatus.QUEUED, "SMTPSenderRefused, SMTP 530")

    monkeypatch.setenv("BOOKWARDEN_SMTP_USERNAME", "relay-user")
    monkeypatch.setenv("BOOKWARDEN_SMTP_PASSWORD", "relay-pass")
    make_due(committed_db)
    assert worker.run_one() is True
    assert smtp_server.logins == ["relay-user"]
    assert len(smtp_server.messages) == 1


def test_an_smtp_settings_error_never_carries_the_password(monkeypatch):
    monkeypatch.setenv("BOOKWARDEN_SMTP_PASSWORD", "hunter2-relay-secret")
    monkeypatch.delenv("BOOKWARDEN_SMTP_USERNAME", raising=False)
    with pytest.raises(ValidationError) as refused:
        delivery.SmtpSettings()
    # The worker stores this text as the job's last_error.
    assert "USERNAME and BOOKWARDEN_SMTP_PASSWORD are set together" in describe_error(refused.value)
    assert "hunter2" not in describe_error(refused.value)


# -- the sweep -------------------------------------------------------------------------------


def test_the_sweep_requeues_a_queued_message_whose_job_vanished(committed_db, committed_tenant, smtp_server):
    lost = queue(committed_db, committed_tenant.id)
    waiting = queue(committed_db, committed_tenant.id, to="other.patron@alpha.example.org")
    with platform_session(committed_db) as session:
        session.execute(delete(Job).where(Job.payload["message_id"].astext == str(lost)))
    with tenant_session(committed_db, committed_tenant.id) as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id == lost).values(attempts=3))

    notify_jobs.declare_schedules(committed_db)
    worker = Worker(committed_db, "t")
    assert worker.tick_schedules() == 1
    run_until_idle(committed_db)

    assert sorted(r for m in smtp_server.messages for r in m.recipients) == [
        "other.patron@alpha.example.org",
        ADDRESS,
    ]
    jobs = {job.payload["message_id"]: job for job in delivery_jobs(committed_db)}
    assert set(jobs) == {str(lost), str(waiting)}  # the waiting message kept its one job
    assert jobs[str(lost)].max_attempts == service.MAX_DELIVERY_ATTEMPTS - 3  # what the message had left

    delivery.sweep(committed_db, {})
    assert len(delivery_jobs(committed_db)) == 2  # sent messages are never swept


def test_the_sweep_runs_every_30_seconds(db):
    notify_jobs.declare_schedules(db)
    notify_jobs.declare_schedules(db)  # at every worker start: idempotent
    with platform_session(db) as session:
        planned = session.get(JobSchedule, delivery.SWEEP)
    assert (planned.kind, planned.every_seconds, planned.enabled) == (delivery.SWEEP, 30, True)


# -- refusals: nothing stored ----------------------------------------------------------------


def refused_leaves_nothing(db, tenant, **overrides) -> InvalidInput:
    """Queue with `overrides`, expect InvalidInput; the caller then commits anyway, and
    still nothing may be stored."""
    with tenant_session(db, tenant.id) as session, pytest.raises(InvalidInput) as refused:
        service.queue_mail(
            session,
            **{
                "to": ADDRESS,
                "subject": SUBJECT,
                "template": "generic.txt",
                "context": CONTEXT,
                "category": MailCategory.SERVICE,
                **overrides,
            },
        )
    assert outbox_count(db, tenant.id) == 0
    assert delivery_jobs(db) == []
    return refused.value


@pytest.mark.parametrize(
    "attempt",
    [
        {"to": f"{ADDRESS}\r\nBcc: victim@example.org"},
        {"to": f"{ADDRESS}\nBcc: victim@example.org"},
        {"to": f"{ADDRESS}\r"},
        {"to": f"{ADDRESS}\x00"},
        {"subject": "Hello\r\nBcc: victim@example.org"},
        {"subject": "Hello\nX-Injected: yes"},
        {"subject": "Hello\rBcc: victim@example.org"},
        {"subject": "Hello\u2028Bcc: victim@example.org"},
        {"headers": {"X-Reference": "1\r\nBcc: victim@example.org"}},
        {"headers": {"X-Reference": "1\nBcc: victim@example.org"}},
        {"headers": {"X-Reference\r\nBcc": "victim@example.org"}},
        {"headers": {"X-Reference: 1\r\nBcc": "victim@example.org"}},
        {"headers": {"Bcc": "victim@example.org"}},
        {"headers": {"cc": "victim@example.org"}},
        {"headers": {"Reply-To": "victim@example.org"}},
        {"headers": {"From": "ceo@alpha.example.org"}},
        {"headers": {"Content-Type": "text/html"}},
    ],
    ids=repr,
)
def test_header_injection_is_refused_and_nothing_stored(db, tenant, attempt):
    refused_leaves_nothing(db, tenant, **attempt)


@pytest.mark.parametrize(
    "to",
    [
        "not-an-address",
        "patron@localhost",
        "@alpha.example.org",
        "two words@alpha.example.org",
        "patron@alpha.example.org, victim@example.org",
        "patron@alpha.example.org;victim@example.org",
        "Zoë <patron@alpha.example.org>",
        "<patron@alpha.example.org>",
        "zoë@alpha.example.org",
        "x" * 65 + "@alpha.example.org",
        "",
    ],
)
def test_an_address_must_be_one_plain_address_and_is_not_echoed(db, tenant, to):
    error = refused_leaves_nothing(db, tenant, to=to)
    assert "one plain address" in error.detail or "at most 64" in error.detail
    assert to not in error.detail or not to


@pytest.mark.parametrize(
    ("category", "headers", "reason"),
    [
        (MailCategory.OPTIONAL, None, "one-click unsubscribe"),
        (MailCategory.OPTIONAL, {"List-Unsubscribe": UNSUBSCRIBE["List-Unsubscribe"]}, "one-click unsubscribe"),
        (MailCategory.OPTIONAL, {**UNSUBSCRIBE, "List-Unsubscribe": "<http://plain.example.org/u>"}, "https"),
        (MailCategory.SECURITY, UNSUBSCRIBE, "cannot be unsubscribed"),
        (MailCategory.SERVICE, {"List-Unsubscribe": UNSUBSCRIBE["List-Unsubscribe"]}, "cannot be unsubscribed"),
        ("marketing", None, "category must be one of"),
    ],
)
def test_unsubscribe_headers_follow_the_category(db, tenant, category, headers, reason):
    error = refused_leaves_nothing(db, tenant, category=category, headers=headers)
    assert reason in error.detail


def test_a_missing_template_variable_is_an_error_at_queue_time(db, tenant):
    with tenant_session(db, tenant.id) as session:
        with pytest.raises(service.MailTemplateError, match="recipient_name"):
            service.queue_mail(
                session,
                to=ADDRESS,
                subject=SUBJECT,
                template="generic.txt",
                context={"message": "m", "institution": "i"},
                category=MailCategory.SERVICE,
            )
        with pytest.raises(service.MailTemplateError, match="no mail template"):
            service.queue_mail(
                session, to=ADDRESS, subject=SUBJECT, template="../models.py", context={}, category="service"
            )
    assert outbox_count(db, tenant.id) == 0
    assert delivery_jobs(db) == []


# -- isolation and logs ----------------------------------------------------------------------


def test_another_tenant_can_neither_read_nor_send_the_message(db, tenant, other_tenant, smtp_server):
    message_id = queue(db, tenant.id)

    with tenant_session(db, other_tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert session.get(OutboxMessage, (tenant.id, message_id)) is None
        changed = session.execute(update(OutboxMessage).values(status=OutboxStatus.FAILED))
        assert changed.rowcount == 0
    with platform_session(db) as session:
        assert session.scalar(text("SELECT count(*) FROM outbox")) == 0

    # A forged job naming the other tenant finds nothing to send.
    delivery.deliver(db, payload_of(other_tenant.id, message_id))
    assert smtp_server.messages == []
    assert stored(db, tenant.id, message_id).status is OutboxStatus.QUEUED


def test_logs_name_ids_and_outcomes_never_address_subject_or_body(committed_db, committed_tenant, smtp_server):
    with capture_logs() as logs:
        smtp_server.refused.add("refused.patron@alpha.example.org")
        queue(committed_db, committed_tenant.id, to="refused.patron@alpha.example.org")
        run_until_idle(committed_db)
        smtp_server.stop()
        message_id = queue(committed_db, committed_tenant.id)
        run_until_idle(committed_db)
        smtp_server.start()
        make_due(committed_db)
        run_until_idle(committed_db)

    events = {entry["event"] for entry in logs}
    assert {"notify.queued", "notify.retry", "notify.failed", "notify.sent"} <= events
    sent = next(entry for entry in logs if entry["event"] == "notify.sent")
    assert sent["message_id"] == str(message_id)
    assert (sent["tenant_id"], sent["category"], sent["outcome"]) == (str(committed_tenant.id), "service", "sent")
    flat = repr(logs)
    for secret in ("patron@alpha.example.org", "refused.patron", "zoe.patron", SUBJECT, "482-113", "Zoë"):
        assert secret not in flat, secret
