"""Deliver outbox mail over SMTP as worker jobs; a sweep re-queues messages whose job was lost.

The jobs that run them, and the sweep's schedule, are declared in notify/jobs.py.

Delivery is at-least-once: the outbox row stays locked while the SMTP exchange runs, so two
runs never send one message side by side; only a crash between the server's acceptance and
our commit sends it again, and then with the same Message-ID, so the receiver can tell.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from typing import Any
from uuid import UUID

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import func, select, text

from bookwarden.core import faults
from bookwarden.core.errors import InvalidInput
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.notify import service
from bookwarden.notify.models import MailCategory, OutboxMessage, OutboxStatus
from bookwarden.notify.policies import optional_mail_policy

DELIVER = service.DELIVER
SWEEP = "notify.sweep"
# Half the one-minute promise for security notices: a message whose job was lost is
# re-queued within 30 s and, with a worker polling every second, sent well inside the minute.
SWEEP_EVERY = timedelta(seconds=30)
SWEEP_BATCH = 500
# Held for the sweep's transaction, so two overlapping sweeps cannot queue one message twice
# (each duplicate job would spend the message's delivery attempts faster).
SWEEP_LOCK = int.from_bytes(b"notify.sweep", "big") & 0x7FFF_FFFF_FFFF_FFFF

log = structlog.get_logger()


class SmtpSettings(BaseSettings):
    """The outgoing SMTP server, read from BOOKWARDEN_SMTP_* at each delivery."""

    # hide_input_in_errors: a validation error is stored as the job's last_error, and its
    # input would otherwise include the SMTP password.
    model_config = SettingsConfigDict(
        env_prefix="BOOKWARDEN_SMTP_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    from_address: str = Field(default="bookwarden@localhost", validation_alias="BOOKWARDEN_SMTP_FROM")
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    # The outbox row stays locked during the exchange, so a hung server must not hold it long.
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("from_address")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n") or "@" not in parseaddr(value)[1]:
            raise ValueError("BOOKWARDEN_SMTP_FROM must be one address, e.g. bookwarden@example.org")
        return value

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("BOOKWARDEN_SMTP_USERNAME and BOOKWARDEN_SMTP_PASSWORD are set together or not at all")
        return self

    @property
    def domain(self) -> str:
        return parseaddr(self.from_address)[1].rpartition("@")[2]


class DeliveryFailed(Exception):
    """One delivery attempt failed. The text names the failure (type, SMTP reply code), never
    the recipient: it is stored in the outbox and jobs tables. `permanent` when the receiving
    server refused this message for good, so retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


def _deliver(session: TenantSession, message_id: UUID, settings: SmtpSettings) -> DeliveryFailed | None:
    """One attempt inside the tenant's transaction; returns the failure to raise after commit."""
    fields: dict[str, str] = {"tenant_id": str(session.tenant_id), "message_id": str(message_id)}
    message = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.tenant_id == session.tenant_id, OutboxMessage.id == message_id)
        .with_for_update(skip_locked=True)
    ).first()
    if message is None:
        # Locked: another run holds it and owns the outcome (it sends, or fails and retries);
        # should anything else ever hold it, the sweep re-queues it once it is free again.
        # Missing: not this tenant's (RLS) or gone. Either way nothing to send here.
        log.info("notify.skipped", outcome="locked_or_missing", **fields)
        return None
    fields["category"] = message.category.value
    if message.status is not OutboxStatus.QUEUED:
        log.info("notify.skipped", outcome=f"already_{message.status.value}", **fields)
        return None
    if message.category is MailCategory.OPTIONAL and not _still_wanted(session, message):
        # An unsubscribe (or an objection) is honoured at once: also for optional mail queued before it.
        _settle_failed(message, "not sent: the recipient unsubscribed (or objected) after it was queued", fields)
        return None

    message.attempts += 1
    try:
        mail = service.open_mail(session, message)
        email = _compose(message, mail, settings)
        faults.point("outbox.sending")
        _send(email, settings)
        faults.point("outbox.accepted")
    except service.UndeliverableMail as exc:
        _settle_failed(message, f"undeliverable: {exc}", fields)
        return None
    except DeliveryFailed as failure:
        return _record_failure(message, failure, fields)
    sent_at = session.scalar(select(func.now()))  # before any change: this query autoflushes
    message.status = OutboxStatus.SENT
    message.sent_at = sent_at
    message.message_id = email["Message-ID"]
    faults.point("outbox.marked_sent")
    log.info("notify.sent", outcome="sent", attempt=message.attempts, **fields)
    return None


def _forget_if_settled(session: TenantSession, message_id: UUID) -> None:
    """A message queued to be forgotten goes, address and all, in the transaction that settles it.

    The row is the one `_deliver` locked and settled, from the session's identity map: no query."""
    message = session.identity_map.get(session.identity_key(OutboxMessage, (session.tenant_id, message_id)))
    if message is not None and message.forget_when_settled and message.status is not OutboxStatus.QUEUED:
        session.delete(message)
        session.flush()
        log.info("notify.forgotten", tenant_id=str(session.tenant_id), message_id=str(message_id))


def _still_wanted(session: TenantSession, message: OutboxMessage) -> bool:
    try:
        policy = optional_mail_policy()
    except InvalidInput:
        return False  # no consent policy loaded: an optional mail is not sent (fail closed)
    return policy.still_wanted(session, message.headers)


def _record_failure(message: OutboxMessage, failure: DeliveryFailed, fields: dict[str, str]) -> DeliveryFailed | None:
    if failure.permanent:
        # The job itself did its duty (the message is settled), so it is not retried.
        _settle_failed(message, f"refused: {failure}", fields)
        return None
    if message.attempts >= service.MAX_DELIVERY_ATTEMPTS:
        _settle_failed(message, f"gave up after {message.attempts} attempts: {failure}", fields)
        return failure
    message.last_error = str(failure)
    log.warning("notify.retry", outcome="retry", attempt=message.attempts, error=str(failure), **fields)
    return failure


def _settle_failed(message: OutboxMessage, error: str, fields: dict[str, str]) -> None:
    message.status = OutboxStatus.FAILED
    message.last_error = error
    log.error("notify.failed", outcome="failed", attempt=message.attempts, error=error, **fields)


def _compose(message: OutboxMessage, mail: service.Mail, settings: SmtpSettings) -> EmailMessage:
    # cte_type 7bit: a non-ASCII body is sent quoted-printable or base64, so it passes even
    # through a relay without 8BITMIME. The policy also refuses CR/LF in any header value,
    # a second line of defence behind the checks made at queue time.
    email = EmailMessage(policy=SMTP_POLICY.clone(cte_type="7bit"))
    email["From"] = settings.from_address
    email["To"] = mail.to
    email["Subject"] = mail.subject
    email["Date"] = formatdate(usegmt=True)
    # From the row id, not random: every attempt carries the same Message-ID, so a resend
    # after a crash is recognisable as the same mail.
    email["Message-ID"] = f"<{message.id}@{settings.domain}>"
    for name, value in message.headers.items():
        email[name] = value
    if "Auto-Submitted" not in email:
        # RFC 3834: machine-generated, so out-of-office responders do not answer it.
        email["Auto-Submitted"] = "auto-generated"
    email.set_content(mail.body)
    return email


def send_to_operators(to: list[str], subject: str, body: str, message_id: str) -> None:
    """Mail the platform's own operators at once (a failed restore drill; later alerts and incidents).

    Not through the outbox: the outbox holds an institution's mail, sealed under its key, and this
    mail belongs to no institution. A job sends it, so a refused delivery (DeliveryFailed) is retried
    as the job's next attempt; `message_id` is stable across attempts, so a receiver sees a retry
    of the same message, not a second one.
    """
    settings = SmtpSettings()
    email = EmailMessage()
    email["From"] = settings.from_address
    email["To"] = ", ".join(to)
    email["Subject"] = subject
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = f"<{message_id}@{settings.domain}>"
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office answers
    email.set_content(body)
    _send(email, settings)


def _send(email: EmailMessage, settings: SmtpSettings) -> None:
    client: smtplib.SMTP | None = None
    try:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        if settings.starttls:
            client.starttls(context=ssl.create_default_context())
        if settings.username is not None and settings.password is not None:
            client.login(settings.username, settings.password.get_secret_value())
        client.send_message(email)
    except (smtplib.SMTPException, OSError) as exc:
        if client is not None:
            client.close()
        # from None: the original exception may quote the recipient (see _failure).
        raise _failure(exc) from None
    # The server has accepted the mail: a failing QUIT must not turn it into a retry (a duplicate).
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _failure(exc: smtplib.SMTPException | OSError) -> DeliveryFailed:
    """A description safe to store: servers' reply texts often quote the recipient, so only
    the reply code is kept. Only refusals of this message are permanent; a refused login or
    sender is a configuration problem that retries will get past once it is fixed."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _reply in exc.recipients.values()})
        return DeliveryFailed(
            f"recipient refused, SMTP {', '.join(map(str, codes))}", permanent=all(code >= 500 for code in codes)
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        permanent = isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500
        return DeliveryFailed(f"{type(exc).__name__}, SMTP {exc.smtp_code}", permanent=permanent)
    # Connection errors and smtplib's own messages name the server at most, never the mail.
    return DeliveryFailed(f"{type(exc).__name__}: {exc}")


def _ids(payload: dict[str, Any]) -> tuple[UUID, UUID]:
    try:
        return UUID(payload["tenant_id"]), UUID(payload["message_id"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"a {DELIVER} job needs tenant_id and message_id (UUIDs) in its payload") from None


def deliver(db: Database, payload: dict[str, Any]) -> None:
    """Send one outbox message. Safe to run twice: a sent or failed message is left alone,
    and a message another run is sending right now is left to that run."""
    tenant_id, message_id = _ids(payload)
    settings = SmtpSettings()
    with tenant_session(db, tenant_id) as session:
        failure = _deliver(session, message_id, settings)
        _forget_if_settled(session, message_id)
    # Raised after the commit, so the attempt recorded on the row is kept while the job
    # queue schedules the retry with backoff (or records the job's final failure).
    if failure is not None:
        raise failure


def sweep(db: Database, payload: dict[str, Any]) -> None:
    """Re-queue queued messages that no live job will deliver (the job failed for good
    before the message settled, or its row was removed)."""
    with platform_session(db) as session:
        if not session.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK))):
            return  # another sweep is running and will find the same messages
        orphans = session.execute(
            text("SELECT tenant_id, message_id, attempts FROM bookwarden_outbox_orphans(:n)"), {"n": SWEEP_BATCH}
        ).all()
        for orphan in orphans:
            service.enqueue_delivery(session, orphan.tenant_id, orphan.message_id, attempts_made=orphan.attempts)
            log.warning(
                "notify.requeued",
                tenant_id=str(orphan.tenant_id),
                message_id=str(orphan.message_id),
                outcome="requeued",
            )
        faults.point("outbox.sweep_requeueing")
    log.info("notify.swept", requeued=len(orphans))
