"""Telling the patron how their data-subject request ended: refused, and why, or carried out.

The mail goes to the address on the patron's record, as the form's one-time code does, never to an
address typed into a request. It is a service message: nobody opts out of hearing how their own
request ended. An access or portability package's download link reaches the patron this way; it
exists nowhere else (only its hash is stored). The address is read before the request is carried
out, because an erasure removes it; the erasure's confirmation is queued to be forgotten once its
delivery settles (notify/delivery.py), so the outbox does not keep what the erasure removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from bookwarden.core.clock import db_now
from bookwarden.db.session import TenantSession
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import mail_time, queue_mail
from bookwarden.privacy.consent.unsubscribe import patron_email
from bookwarden.privacy.requests.models import PrivacyRequest, RequestKind
from bookwarden.tenancy.service import institution_name

log = structlog.get_logger()
TEMPLATE = "privacy_request_outcome.txt"

KIND_TEXT = {
    RequestKind.ACCESS: "a copy of your personal data",
    RequestKind.PORTABILITY: "your personal data in a machine-readable form",
    RequestKind.RECTIFICATION: "correction of your personal data",
    RequestKind.ERASURE: "erasure of your personal data",
    RequestKind.RESTRICTION: "restriction of the processing of your personal data",
    RequestKind.OBJECTION: "objection to the processing of your personal data",
}
OUTCOME_TEXT = {
    RequestKind.ACCESS: "Your data is ready: a ZIP file with every record about you, as JSON and CSV.",
    RequestKind.PORTABILITY: "Your data is ready: a ZIP file with every record about you, as JSON and CSV.",
    RequestKind.RECTIFICATION: "The corrections you asked for have been made to your record.",
    RequestKind.ERASURE: "Your personal data has been erased, including from the institution's backups: "
    "the keys that protected it there were destroyed.",
    RequestKind.RESTRICTION: "Your record is restricted: it will not be changed or used further until the "
    "restriction is lifted, except to correct it.",
    RequestKind.OBJECTION: "Your objection is recorded: your data is no longer disclosed or used for the "
    "purpose you objected to, unless the law requires it.",
}


@dataclass(frozen=True)
class Outcome:
    """What the patron is told besides the request itself (a link, a certificate), never stored as such."""

    link: str | None = None
    link_expires: datetime | None = None
    certificate_id: UUID | None = None


def address_on_file(session: TenantSession, request: PrivacyRequest) -> str | None:
    """Read before carrying the request out: an erasure removes it."""
    return patron_email(session, request.patron_id) if request.patron_id is not None else None


def tell_refused(session: TenantSession, request: PrivacyRequest, reason: str) -> bool:
    return _tell(session, request, address_on_file(session, request), refused=True, reason=reason)


def tell_completed(session: TenantSession, request: PrivacyRequest, address: str | None, outcome: Outcome) -> bool:
    return _tell(session, request, address, refused=False, outcome=outcome)


def _tell(
    session: TenantSession,
    request: PrivacyRequest,
    address: str | None,
    *,
    refused: bool,
    reason: str | None = None,
    outcome: Outcome = Outcome(),
) -> bool:
    """Queue the mail; False (and nothing queued) when the patron has no address on file."""
    if not address:
        log.info("privacy.request_outcome_not_mailed", tenant_id=str(session.tenant_id), reason="no address on file")
        return False
    kind = RequestKind(request.kind)
    institution = institution_name(session)
    queue_mail(
        session,
        to=address,
        subject=f"[{institution}] your data-subject request {'refused' if refused else 'carried out'} "
        f"(reference {request.id})",
        template=TEMPLATE,
        context={
            "institution": institution,
            "refused": refused,
            "reference": str(request.id),
            "kind_text": KIND_TEXT[kind],
            "received": mail_time(request.received_at),
            "when": mail_time(db_now(session)),
            "reason": reason,
            "outcome_text": OUTCOME_TEXT[kind],
            "link": outcome.link,
            "link_expires": mail_time(outcome.link_expires) if outcome.link_expires else None,
            "certificate_id": str(outcome.certificate_id) if outcome.certificate_id else None,
        },
        category=MailCategory.SERVICE,
        forget_when_settled=kind is RequestKind.ERASURE and not refused,
    )
    return True
