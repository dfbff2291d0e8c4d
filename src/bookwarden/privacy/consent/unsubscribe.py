"""Optional mail and its one-click unsubscribe (RFC 8058).

Every optional mail is queued by `queue_optional_mail`: it goes only to a patron whose latest
choice for its topic on email is yes, carries

    List-Unsubscribe: <https://<public url>/api/v1/unsubscribe/<token>>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

and the same link in its body. The outbox (notify/service.py) checks it once more where every mail
is queued, through `check_optional_mail`: an optional mail whose link is not ours, names another
institution, or goes to a patron who said no is refused there, whoever queued it.

The token names the institution, the patron and the topic, and is signed:

    token = base64url(tenant id 16 bytes | patron id 16 bytes | topic) "." base64url(HMAC-SHA256)

with a key derived from the master key for this use only, so no table of secrets is needed. It has
no expiry: a mail read a year later must still let its reader leave. Any master key still loaded
verifies it, so a key rotation does not break the links already sent. Verification computes the
MAC in full and compares in constant time whatever the token looked like, and every token that is
not genuine gets the same answer.

POST to the link honours the request before answering (the consent record is written and
committed first); a second POST changes nothing. GET only shows a page whose button sends that
POST: mail scanners follow links, and a scanner must not unsubscribe anyone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput
from bookwarden.core.purposes import SharingPath
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, TenantSession, tenant_session
from bookwarden.identity.links import LinkSettings
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import queue_mail
from bookwarden.privacy.consent import gate
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent.models import ConsentMethod
from bookwarden.privacy.consent.service import LABELS, Channel, Topic
from bookwarden.tenancy.models import Tenant

PATH = "/api/v1/unsubscribe/"
ONE_CLICK = "List-Unsubscribe=One-Click"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{40,120}\.[A-Za-z0-9_-]{43}$"  # noqa: S105 - a shape, not a secret
_LINK = re.compile(r"<(https://[^<>\s]+)>")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TOPICS = {t.value: t for t in Topic if t.optional}
TEMPLATE = "optional_mail.txt"


class InvalidUnsubscribeLink(BookwardenError):
    """The one answer for every token that is not genuine, whatever is wrong with it."""

    slug, status, title = "invalid-unsubscribe-link", 404, "Unsubscribe link not valid"

    def __init__(self) -> None:
        super().__init__(
            "this unsubscribe link is not one we sent; use the link in the mail as it is, or sign in to the "
            "privacy portal to change your mail preferences"
        )


class OptedOut(Conflict):
    """An optional mail to a patron who has not agreed to its topic (or withdrew): never queued."""

    slug = "opted-out"


@dataclass(frozen=True)
class UnsubscribeClaims:
    tenant_id: UUID
    patron_id: UUID
    topic: Topic


@dataclass(frozen=True)
class Unsubscribed:
    institution: str
    topic: Topic
    changed: bool  # False: it was off already (a second click, or never agreed)


# -- tokens ------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _key(master_key: bytes) -> bytes:
    return derive(master_key, KeyPurpose.UNSUBSCRIBE_LINK)


def _mac(master_key: bytes, payload: bytes) -> bytes:
    return hmac.new(_key(master_key), payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes | None:
    """Strict base64url: only the canonical spelling of the bytes, so a changed character is a change."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return raw if _b64(raw) == text else None


def sign(master: MasterKeys, tenant_id: UUID, patron_id: UUID, topic: Topic) -> str:
    topic = Topic(topic)
    if not topic.optional:
        raise InvalidInput(f"{topic.value} is a service message: it has no unsubscribe link")
    payload = tenant_id.bytes + patron_id.bytes + topic.value.encode()
    return f"{_b64(payload)}.{_b64(_mac(master.current, payload))}"


def verify(master: MasterKeys, token: str) -> UnsubscribeClaims:
    """The claims of a genuine token; InvalidUnsubscribeLink otherwise, the same for every fault."""
    payload_text, _, mac_text = token.partition(".") if isinstance(token, str) else ("", "", "")
    payload, given = _unb64(payload_text), _unb64(mac_text)
    genuine = False
    for key in master.keys.values():  # every loaded key, each compared in full
        genuine |= hmac.compare_digest(_mac(key, payload or b""), given or b"")
    if payload is None or not genuine or len(payload) < 33:
        raise InvalidUnsubscribeLink()
    topic = _TOPICS.get(payload[32:].decode("ascii", "replace"))
    if topic is None:  # signed by us, so never; refused all the same
        raise InvalidUnsubscribeLink()
    return UnsubscribeClaims(UUID(bytes=payload[:16]), UUID(bytes=payload[16:32]), topic)


def link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{PATH}{token}"


# -- queuing optional mail ------------------------------------------------------------------------


def queue_optional_mail(
    session: TenantSession,
    patron_id: UUID,
    topic: Topic,
    *,
    subject: str,
    template: str,
    context: dict[str, Any],
) -> OutboxMessage:
    """Queue an optional mail on `topic` to the patron's address on file, with its one-click link.

    Refused (OptedOut) when the patron has not agreed to the topic by email, or withdrew."""
    topic = Topic(topic)
    if not topic.optional:
        raise InvalidInput(f"{topic.value} is a service message: queue it as a service mail, not an optional one")
    consent.require_patron(session, patron_id)
    if not consent.is_subscribed(session, patron_id, Channel.EMAIL, topic):
        raise OptedOut(f"patron {patron_id} has not agreed to {topic.value} by email (or withdrew): not queued")
    _refuse_objector(session, patron_id, topic)
    public_url = str(LinkSettings().public_url)
    if not public_url.startswith("https://"):
        raise InvalidInput(
            "BOOKWARDEN_PUBLIC_URL must be an https URL to send optional mail: its one-click unsubscribe "
            "link (RFC 8058) must be https"
        )
    address = patron_email(session, patron_id)
    if not address:
        raise InvalidInput(f"patron {patron_id} has no email address on file")
    url = link(public_url, sign(session.keyring.master, session.tenant_id, patron_id, topic))
    return queue_mail(
        session,
        to=address,
        subject=subject,
        template=TEMPLATE,
        context={**context, "body_template": template, "unsubscribe_url": url, "topic_label": LABELS[topic]},
        category=MailCategory.OPTIONAL,
        headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK},
    )


def check_optional_mail(session: TenantSession, to: str, headers: dict[str, str], body: str) -> None:
    """The outbox's own check of an optional mail (the policy notify/service.py asks for every one): its
    List-Unsubscribe is our signed link for this institution, the body carries the same link, it goes
    to the address on the record of the patron the link names, and that patron agrees to its topic now."""
    url, claims = _link_of(session, headers)
    if claims is None:
        raise InvalidInput(
            "optional mail must carry the platform's signed unsubscribe link for this institution "
            "(privacy/consent/unsubscribe.py queue_optional_mail builds it)"
        )
    if url not in body:
        raise InvalidInput("an optional mail must show its unsubscribe link in the body too")
    if not consent.is_subscribed(session, claims.patron_id, Channel.EMAIL, claims.topic):
        raise OptedOut(
            f"patron {claims.patron_id} has not agreed to {claims.topic.value} by email (or withdrew): not queued"
        )
    _refuse_objector(session, claims.patron_id, claims.topic)
    if (patron_email(session, claims.patron_id) or "").lower() != to.lower():
        # One patron's yes is not a licence to mail another address with their link.
        raise InvalidInput("an optional mail goes to the address on the record of the patron its link names")


def still_wanted(session: TenantSession, headers: dict[str, str]) -> bool:
    """At delivery: whether the patron an optional mail's link names still agrees to its topic and has not
    objected since (a mail queued before an unsubscribe or an objection is not sent after it). A link that
    is not ours is not wanted either."""
    _, claims = _link_of(session, headers)
    return (
        claims is not None
        and consent.is_subscribed(session, claims.patron_id, Channel.EMAIL, claims.topic)
        and gate.excluded(session, SharingPath.OPTIONAL_MAIL, claims.topic.value, claims.patron_id) is None
    )


def _refuse_objector(session: TenantSession, patron_id: UUID, topic: Topic) -> None:
    """The sharing gate's answer for one optional mail: a patron who objects to its topic (or to marketing),
    or whose processing is restricted, gets none, whatever they subscribed to."""
    reason = gate.excluded(session, SharingPath.OPTIONAL_MAIL, topic.value, patron_id)
    if reason is not None:
        raise OptedOut(f"patron {patron_id} is left out of optional mail on {topic.value} ({reason}): not queued")


def _link_of(session: TenantSession, headers: dict[str, str]) -> tuple[str, UnsubscribeClaims | None]:
    """The List-Unsubscribe URL and its claims; None unless it is our genuine link for this institution."""
    found = _LINK.search(headers.get("List-Unsubscribe", ""))
    url = found.group(1) if found else ""
    try:
        claims = verify(session.keyring.master, url.rpartition(PATH)[2] if PATH in url else "")
    except InvalidUnsubscribeLink:
        return url, None
    return url, claims if claims.tenant_id == session.tenant_id else None


# -- following the link ------------------------------------------------------------------------------


def confirmation(db: Database, token: str) -> Unsubscribed:
    """What the link would do, for the confirmation page: changes nothing (but the page view is audited)."""
    claims = verify(db.master, token)
    with tenant_session(db, claims.tenant_id) as session:
        institution = _institution(session, claims)
        audit.record(
            session, Action.UNSUBSCRIBE_VIEWED, ("patron", claims.patron_id), details={"topic": claims.topic.value}
        )
    return Unsubscribed(institution, claims.topic, False)


def unsubscribe(db: Database, token: str) -> Unsubscribed:
    """Honour a one-click unsubscribe: the topic is off for this patron when this returns (committed)."""
    claims = verify(db.master, token)
    with tenant_session(db, claims.tenant_id) as session:
        institution = _institution(session, claims)
        exists = session.get(Patron, (session.tenant_id, claims.patron_id)) is not None
        # An erased patron has nothing left to unsubscribe; the answer is the same, so it tells nothing.
        record = (
            consent.withdraw(session, claims.patron_id, Channel.EMAIL, claims.topic, ConsentMethod.UNSUBSCRIBE_LINK)
            if exists
            else None
        )
        audit.record(
            session,
            Action.UNSUBSCRIBED,
            ("patron", claims.patron_id),
            details={
                "topic": claims.topic.value,
                "channel": Channel.EMAIL.value,
                "changed": record is not None,
                "consent_record_id": record.id if record is not None else None,
            },
        )
    return Unsubscribed(institution, claims.topic, record is not None)


def _institution(session: TenantSession, claims: UnsubscribeClaims) -> str:
    tenant = session.get(Tenant, claims.tenant_id)
    if tenant is None:  # offboarded: the link is as dead as a forged one
        raise InvalidUnsubscribeLink()
    return tenant.name


def patron_email(session: TenantSession, patron_id: UUID) -> str | None:
    """The address on the patron's record; None when there is none, the patron was erased, or the address is
    a self-registration's its owner has not confirmed yet (library.email_on_file: nothing goes to it)."""
    patron = session.get(Patron, (session.tenant_id, patron_id))
    return None if patron is None else library.email_on_file(session, patron)
