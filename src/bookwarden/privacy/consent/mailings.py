"""Mailings: the institution's optional mail (newsletters, events, recommendations, surveys).

The one way the platform sends optional mail to patrons. A mailing goes to every patron whose latest
choice for its topic by email is yes, each message through `unsubscribe.queue_optional_mail`, so
each carries its own one-click link and the outbox checks the patron's choice once more.

Before any is queued the sharing gate (privacy/consent/gate.py) is asked about the subscribers: a patron
who objects to the topic as a purpose (`purpose:newsletters`...) or to marketing, or whose processing is
restricted, gets nothing, whatever they subscribed to, and the mailing counts them. A topic that is
direct marketing is refused outright.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import SharingPath, checked_purpose
from bookwarden.core.sensitive import check_fields
from bookwarden.db.session import TenantSession
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent.gate import check_sharing
from bookwarden.privacy.consent.models import ConsentRecord
from bookwarden.privacy.consent.service import Channel, Topic
from bookwarden.privacy.consent.unsubscribe import patron_email, queue_optional_mail
from bookwarden.tenancy.models import Tenant

MAX_RECIPIENTS = 50_000


@dataclass(frozen=True)
class Mailing:
    topic: Topic
    queued: int
    without_address: int  # agreed, but no address on file (or erased): nobody to send to
    objected: int = 0  # agreed, but left out by the sharing gate: an objection, or a restriction


def subscribers(session: TenantSession, topic: Topic) -> list[UUID]:
    """Patrons whose latest choice for `topic` by email is yes."""
    latest = (
        select(ConsentRecord.patron_id, ConsentRecord.given)
        .where(
            ConsentRecord.tenant_id == session.tenant_id,
            ConsentRecord.purpose == consent.purpose(Channel.EMAIL, topic),
        )
        .distinct(ConsentRecord.patron_id)
        .order_by(ConsentRecord.patron_id, ConsentRecord.seq.desc())
    )
    return [patron_id for patron_id, given in session.execute(latest) if given]


def send(session: TenantSession, actor: Principal, topic: Topic, *, subject: str, message: str) -> Mailing:
    """Queue `message` to every patron who agreed to `topic` by email."""
    authorize(actor, Permission.MAILINGS_SEND)
    topic = _topic(topic)
    if not topic.optional:
        raise InvalidInput(f"topic: {topic.value} is a service message, not a mailing")
    check_fields({"subject": subject, "message": message})  # no payment or bank data in a mailing either
    recipients = subscribers(session, topic)
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidInput(f"a mailing goes to at most {MAX_RECIPIENTS} patrons; this topic has {len(recipients)}")
    decision = check_sharing(session, SharingPath.OPTIONAL_MAIL, topic.value, recipients, actor=actor)
    institution = session.get(Tenant, session.tenant_id).name
    queued = without_address = 0
    for patron_id in decision.allowed:
        if not patron_email(session, patron_id):
            without_address += 1
            continue
        queue_optional_mail(
            session,
            patron_id,
            topic,
            subject=subject,
            template="newsletter.txt",
            context={"message": message, "institution": institution},
        )
        queued += 1
    audit.record(
        session,
        Action.MAILING_SENT,
        actor=actor,
        details={
            "topic": topic.value,
            "queued": queued,
            "without_address": without_address,
            "objected": len(decision.excluded),
        },
    )
    return Mailing(topic, queued, without_address, len(decision.excluded))


def _topic(topic: Topic | str) -> Topic:
    """A mail kind is a purpose too: direct marketing is refused with its reason, an unknown one named."""
    checked_purpose(str(getattr(topic, "value", topic)), "topic")
    try:
        return Topic(topic)
    except ValueError:
        known = ", ".join(t.value for t in Topic if t.optional)
        raise InvalidInput(f"topic: one of {known}") from None
