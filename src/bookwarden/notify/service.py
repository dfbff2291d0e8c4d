"""Queue outbound mail: render, validate, encrypt, and enqueue its delivery in one transaction.

Functions take the caller's TenantSession and never commit: the outbox row and its delivery
job appear exactly when the caller's business transaction commits, and never if it rolls back.

A message is kept 90 days after it was sent (or given up), then forgotten (`forget_settled_before`): the
personal-data registry publishes that period for correspondence. The job that runs it records each batch in
the institution's audit trail, which this layer sits beside, not above: privacy/retention/jobs.py declares it,
as it declares the audit trail's own retention.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

import jinja2
import structlog
from pydantic import StringConstraints
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from bookwarden.core.errors import InvalidInput
from bookwarden.crypto.aead import DecryptionError
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.crypto.keyring import KeyDestroyed
from bookwarden.db.session import TenantSession
from bookwarden.jobs.models import Job
from bookwarden.jobs.service import enqueue
from bookwarden.notify.models import MailCategory, OutboxMessage, OutboxStatus
from bookwarden.notify.policies import optional_mail_policy

DELIVER = "notify.deliver"
# With the job queue's backoff (2**n s, capped at an hour) 20 attempts keep retrying for
# roughly seven to nine hours: long enough to ride out an SMTP outage, short enough that a
# mail nobody can deliver is reported failed the same day.
MAX_DELIVERY_ATTEMPTS = 20
TABLE = "outbox"
FORGET_OLD_MAIL = "notify.forget_old_mail"
# The registry's "90 days after sending" (privacy/registry.py CORRESPONDENCE; privacy/periods.py checks).
KEEP_SETTLED = timedelta(days=90)
TEMPLATES = Path(__file__).parent / "templates"

# Service and security mail say, at their end, that they cannot be unsubscribed from and why.
FOOTERS = {MailCategory.SERVICE: "service_footer.txt", MailCategory.SECURITY: "security_footer.txt"}

MAX_SUBJECT = 250
MAX_HEADER_VALUE = 900  # RFC 5322 caps a line at 998 characters, name and folding included
MAX_HEADERS = 20
ONE_CLICK = "List-Unsubscribe=One-Click"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# One bare addr-spec, ASCII, local part at most 64 characters: no display name, no list, no
# comments, no quoting, nothing that could end a header line. The one address syntax of the
# platform: API schemas use the same pattern, so whatever they accept can be mailed.
ADDRESS_PATTERN = rf"[A-Za-z0-9_%+-][A-Za-z0-9._%+-]{{0,63}}@{_LABEL}(?:\.{_LABEL})+"
ADDRESS = re.compile(ADDRESS_PATTERN)
EmailAddress = Annotated[str, StringConstraints(max_length=254, pattern=f"^{ADDRESS_PATTERN}$")]
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
HTTPS_URI = re.compile(r"<https://[^<>\s]+>")

# Headers a caller may add. Everything else (From, To, Cc, Bcc, Reply-To, Sender, Subject,
# Date, Message-ID, Content-*) is either set by delivery or could add recipients or reshape
# the message, so it is refused rather than filtered.
EXTRA_HEADERS = {
    name.lower(): name
    for name in (
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "List-Id",
        "List-Help",
        "Auto-Submitted",
        "Precedence",
        "Feedback-ID",
        "In-Reply-To",
        "References",
    )
}

log = structlog.get_logger()


class MailTemplateError(RuntimeError):
    """A template could not be rendered with the context given: a bug in the calling code,
    not bad user input, so deliberately not an InvalidInput (it must surface as a 500)."""


class UndeliverableMail(Exception):
    """The stored message cannot be opened (key destroyed, or ciphertext altered): no retry can help."""


@dataclass(frozen=True)
class Mail:
    """A message's decrypted fields, held only while it is being sent."""

    to: str
    subject: str
    body: str


def queue_mail(
    session: TenantSession,
    *,
    to: str,
    subject: str,
    template: str,
    context: dict[str, Any],
    category: MailCategory,
    headers: dict[str, str] | None = None,
    send_after: datetime | None = None,
    forget_when_settled: bool = False,
) -> OutboxMessage:
    """Render `template` with `context` and queue it for `to`; sent by a worker after commit.

    Everything is checked before anything is written, so a refusal leaves no trace. Service and
    security mail get a closing paragraph saying why they cannot be unsubscribed from; optional mail
    is refused unless it carries the platform's one-click link (privacy/consent/unsubscribe.py) and the
    patron agrees to its topic now.
    `send_after` (timezone-aware) defers delivery; by default it is as soon as possible.
    `forget_when_settled`: the row is deleted once the mail is sent or given up (delivery.py).
    """
    category = _checked_category(category)
    address = _checked_address(to)
    subject = _checked_subject(subject)
    extra = _checked_headers(headers, category)
    if send_after is not None and (send_after.tzinfo is None or send_after.utcoffset() is None):
        raise InvalidInput("send_after must be timezone-aware (e.g. datetime.now(UTC)), got a naive datetime")
    body = render(template, context)
    if category is MailCategory.OPTIONAL:
        # Where every mail is queued, whoever queues it: an optional mail carries our signed
        # unsubscribe link and goes only to a patron who agrees to its topic now.
        optional_mail_policy().check_optional_mail(session, address, extra, body)
    else:
        body += render(FOOTERS[category], {})  # why this mail cannot be unsubscribed from

    message = _sealed(session, category, Mail(to=address, subject=subject, body=body), extra)
    if send_after is not None:
        message.send_after = send_after
    message.forget_when_settled = forget_when_settled
    session.add(message)
    session.flush()
    enqueue_delivery(session, session.tenant_id, message.id, run_at=send_after)
    log.info("notify.queued", tenant_id=str(session.tenant_id), message_id=str(message.id), category=category.value)
    return message


def forget_settled_before(session: TenantSession, cutoff: datetime, limit: int) -> list[UUID]:
    """Delete at most `limit` messages of the institution settled before `cutoff`: sent then, or given up and
    queued then (a failed message keeps no time of its last attempt). Mail still to be delivered stays."""
    outbox = OutboxMessage.__table__
    settled = or_(
        and_(outbox.c.status == OutboxStatus.SENT.value, outbox.c.sent_at < cutoff),
        and_(outbox.c.status == OutboxStatus.FAILED.value, outbox.c.created_at < cutoff),
    )
    chosen = (
        select(outbox.c.id).where(outbox.c.tenant_id == session.tenant_id, settled).order_by(outbox.c.id).limit(limit)
    )
    removed = session.scalars(
        delete(outbox)
        .where(outbox.c.tenant_id == session.tenant_id, outbox.c.id.in_(chosen.scalar_subquery()))
        .returning(outbox.c.id)
    )
    return list(removed)


def mail_time(moment: datetime) -> str:
    """A time as mail shows it: to the minute (the database's times are UTC)."""
    return moment.isoformat(timespec="minutes")


def render(template: str, context: dict[str, Any]) -> str:
    """The plain-text body; a missing variable raises instead of rendering as a blank."""
    if not isinstance(context, dict):
        raise MailTemplateError(f"template {template!r}: context must be a dict, got {type(context).__name__}")
    try:
        return _templates().get_template(template).render(context)
    except jinja2.TemplateNotFound:
        raise MailTemplateError(f"no mail template named {template!r} in {TEMPLATES}") from None
    except jinja2.TemplateError as exc:
        raise MailTemplateError(f"template {template!r}: {exc.message}") from None


def enqueue_delivery(
    session: Session,
    tenant_id: UUID,
    message_id: UUID,
    *,
    attempts_made: int = 0,
    run_at: datetime | None = None,
) -> Job:
    """The job that delivers one message. Its payload holds ids only, never the address:
    job rows are platform rows, unencrypted and readable without a tenant context."""
    return enqueue(
        session,
        DELIVER,
        {"tenant_id": str(tenant_id), "message_id": str(message_id)},
        run_at=run_at,
        max_attempts=max(1, MAX_DELIVERY_ATTEMPTS - attempts_made),
    )


def open_mail(session: TenantSession, message: OutboxMessage) -> Mail:
    """Decrypt a message for sending; UndeliverableMail when it can no longer be read."""
    try:
        key = session.keyring.tenant_own_key(message.tenant_id)
    except KeyDestroyed:
        raise UndeliverableMail("the tenant's keys were destroyed (offboarded)") from None

    def unseal(column: str) -> str:
        return decrypt_field(key, message.tenant_id, TABLE, column, message.id, getattr(message, column))

    try:
        return Mail(to=unseal("to_address"), subject=unseal("subject"), body=unseal("body"))
    except DecryptionError:
        raise UndeliverableMail("stored ciphertext failed authentication: altered outside Bookwarden") from None


def _sealed(session: TenantSession, category: MailCategory, mail: Mail, headers: dict[str, str]) -> OutboxMessage:
    # The tenant's own key, not the recipient's subject key: a breach notice about an erased
    # person must still reach the tenant's security contact.
    key = session.keyring.tenant_own_key(session.tenant_id)
    row_id = uuid4()

    def seal(column: str, value: str) -> bytes:
        return encrypt_field(key, session.tenant_id, TABLE, column, row_id, value)

    return OutboxMessage(
        tenant_id=session.tenant_id,
        id=row_id,
        category=category,
        to_address=seal("to_address", mail.to),
        subject=seal("subject", mail.subject),
        body=seal("body", mail.body),
        key_version=1,  # the tenant's own key is re-wrapped, never replaced, by rotation
        headers=headers,
        status=OutboxStatus.QUEUED,
        attempts=0,
    )


def _checked_category(category: MailCategory | str) -> MailCategory:
    try:
        return MailCategory(category)
    except ValueError:
        known = ", ".join(c.value for c in MailCategory)
        raise InvalidInput(f"category must be one of {known}, got {category!r}") from None


def _checked_address(to: str) -> str:
    # The value is never echoed back: it is personal data and errors may be logged.
    if not isinstance(to, str) or _has_control(to) or len(to) > 254 or not ADDRESS.fullmatch(to.strip()):
        raise InvalidInput(
            "to: must be one plain address like name@example.org: no display name, no second address, "
            "no spaces or line breaks, ASCII only, at most 254 characters"
        )
    return to.strip()


def _checked_subject(subject: str) -> str:
    if not isinstance(subject, str) or _has_control(subject):
        raise InvalidInput("subject: must be text without line breaks or control characters")
    subject = subject.strip()
    if not subject or len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"subject: must be 1-{MAX_SUBJECT} characters")
    return subject


def _checked_headers(headers: dict[str, str] | None, category: MailCategory) -> dict[str, str]:
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        raise InvalidInput(f"headers must be a dict of name to value, got {type(headers).__name__}")
    if len(headers) > MAX_HEADERS:
        raise InvalidInput(f"headers: at most {MAX_HEADERS} extra headers")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        canonical = _checked_header_name(name)
        if canonical in checked:
            raise InvalidInput(f"headers: {canonical} is given twice (names are case-insensitive)")
        if not isinstance(value, str) or _has_control(value) or not value.strip() or len(value) > MAX_HEADER_VALUE:
            raise InvalidInput(
                f"headers: {canonical} must be 1-{MAX_HEADER_VALUE} characters without line breaks "
                "or control characters"
            )
        checked[canonical] = value.strip()
    _check_unsubscribe(checked, category)
    return checked


def _checked_header_name(name: str) -> str:
    if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
        raise InvalidInput("headers: a header name is letters, digits and '-' only")
    if name.lower().startswith("x-"):
        return name
    canonical = EXTRA_HEADERS.get(name.lower())
    if canonical is None:
        allowed = ", ".join(sorted(EXTRA_HEADERS.values()))
        raise InvalidInput(f"headers: {name} cannot be set by a caller; allowed: {allowed}, or X-*")
    return canonical


def _check_unsubscribe(headers: dict[str, str], category: MailCategory) -> None:
    """Optional mail must offer RFC 8058 one-click unsubscribe; other mail must not offer any."""
    offers = "List-Unsubscribe" in headers or "List-Unsubscribe-Post" in headers
    if category is not MailCategory.OPTIONAL:
        if offers:
            raise InvalidInput(f"{category.value} mail cannot be unsubscribed from; it must not carry List-Unsubscribe")
        return
    if not HTTPS_URI.search(headers.get("List-Unsubscribe", "")) or headers.get("List-Unsubscribe-Post") != ONE_CLICK:
        raise InvalidInput(
            "optional mail must offer one-click unsubscribe (RFC 8058): List-Unsubscribe with an https URL "
            f"in <...>, and List-Unsubscribe-Post: {ONE_CLICK}"
        )


def _has_control(value: str) -> bool:
    # Not only CR and LF: NUL, NEL and the Unicode line and paragraph separators also end a
    # header line for some parsers, and a tab has no business in an address or a subject.
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value)


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    # autoescape off: bodies are plain text, and HTML escaping would turn "&" into "&amp;" in
    # the mail. The templates are ours; only context values come from data.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,  # noqa: S701
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
