"""Concerns: anyone reports suspected unauthorised access to an account, or that a child's data is held.

Two ways in: a patron signed in to the portal (their account's address answers them unless they give
another), or the open form, without an account, naming the institution and an address to be answered at.
The open form is throttled per network address like the request form and self-registration (a count of its
own in identity/throttle.py: 5 in 15 minutes, then growing waits), and every text is screened for payment
data (api/bodies.py, and `check_fields` here for callers from Python).

A report is stored (its text and contact address sealed under the institution's key), recorded, and reaches
the institution at once, in the same transaction: a mail through the outbox to its security contacts and to
every active account holding privacy.concerns.handle (privacy and security officers, or a custom role), who
read it here. The reporter gets a reference, and no mail: an open form that mailed any address it was given
would be a way to send the institution's mail to strangers.

Incidents. The incidents area (above this one) will open an incident from a report: it registers a function
with `register_incident_opener`, called in the report's transaction, whose incident id is kept on the report.
Until an area registers one, reports open nothing (there is no incident to open yet); they still reach people.

Reports are deleted two years after they were received (`forget_received`, daily: privacy/concerns/jobs.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from pydantic import BaseModel
from sqlalchemy import delete, select

from bookwarden.access.roles.notices import security_contacts
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Forbidden, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.core.sensitive import check_fields
from bookwarden.core.text import LINES
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import throttle
from bookwarden.identity.accounts.service import account_address, holders_to_mail
from bookwarden.identity.models import Account, AccountKind
from bookwarden.identity.signin import service as signin
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import ADDRESS, mail_time, queue_mail
from bookwarden.privacy.concerns.models import Concern, ConcernChannel, ConcernKind
from bookwarden.tenancy.models import TenantStatus
from bookwarden.tenancy.service import institution_name

TABLE = "privacy_concerns"
TARGET = "concern"
RETENTION_JOB = "privacy.concern_retention"
# The registry's "2 years after the report was received" (privacy/registry.py CONCERNS; privacy/periods.py checks).
KEEP_AFTER_RECEIPT = timedelta(days=730)
LIST_LIMIT = 500
MAX_DESCRIPTION = 10_000

KIND_TEXT = {
    ConcernKind.UNAUTHORISED_ACCESS: "suspected unauthorised access to an account",
    ConcernKind.CHILD_DATA: "that it holds personal data about a child",
}
GUIDANCE = {
    ConcernKind.UNAUTHORISED_ACCESS: (
        "Check the account's recent sign-ins and actions in the audit trail, end its sessions and reset its "
        "credentials if the report holds; a breach of personal data may have to be notified within 72 hours."
    ),
    ConcernKind.CHILD_DATA: (
        "Find the record, and unless a parent or guardian consented, restrict and erase it; children under 13 "
        "cannot register themselves here (the self-registration age gate)."
    ),
}

# -- the incidents hook ----------------------------------------------------------------------

# (session, concern) -> the id of the incident opened from it, or None; called in the report's transaction.
IncidentOpener = Callable[[TenantSession, Concern], UUID | None]
_incident_openers: list[IncidentOpener] = []


def register_incident_opener(opener: IncidentOpener) -> None:
    """The incidents area registers here how an incident is opened from a report (one opener)."""
    _incident_openers[:] = [opener]


def _open_incident(session: TenantSession, concern: Concern) -> None:
    for opener in _incident_openers:
        concern.incident_id = opener(session, concern)


# -- what callers see ------------------------------------------------------------------------


class ConcernSummary(BaseModel):
    id: UUID
    kind: ConcernKind
    channel: ConcernChannel
    account_id: UUID | None
    received_at: datetime
    incident_id: UUID | None


class ConcernDetail(ConcernSummary):
    description: str
    contact_email: str


class ConcernReceived(BaseModel):
    reference: UUID
    detail: str


def _summary(concern: Concern) -> ConcernSummary:
    return ConcernSummary(
        id=concern.id,
        kind=ConcernKind(concern.kind),
        channel=ConcernChannel(concern.channel),
        account_id=concern.account_id,
        received_at=concern.received_at,
        incident_id=concern.incident_id,
    )


def _received(concern: Concern, institution: str) -> ConcernReceived:
    return ConcernReceived(
        reference=concern.id,
        detail=(
            f"{institution} has your report (reference {concern.id}); its privacy and security staff have been "
            "told, and will answer at the address you gave if they need to know more."
        ),
    )


# -- reporting -------------------------------------------------------------------------------


def report_own(
    session: TenantSession, actor: Principal, kind: ConcernKind, description: str, contact_email: str | None = None
) -> ConcernReceived:
    """A signed-in patron reports; answered at their account's address unless they give another."""
    account = session.get(Account, (session.tenant_id, actor.id)) if actor.kind is PrincipalKind.ACCOUNT else None
    if account is None or account.kind is not AccountKind.PATRON:
        raise Forbidden("only a patron signed in to their own account reports this way; others use the open form")
    contact = contact_email or account_address(session, account)
    if not contact:
        raise InvalidInput("contact_email: your account has no address on file; give one to be answered at")
    concern = _receive(session, kind, ConcernChannel.PATRON, description, contact, account.id, actor)
    return _received(concern, institution_name(session))


def report_anonymous(
    db: Database, *, institution: str, kind: ConcernKind, description: str, contact_email: str, source_address: str
) -> ConcernReceived:
    """Anyone reports, without an account, naming the institution and an address to be answered at.

    Raises TooManyAttempts while the sender's address must wait (checked first: a waiting sender learns
    nothing, not even whether the institution exists), NotFound for an institution that takes no reports here.
    """
    _admit(db, source_address)
    with platform_session(db) as session:
        tenant = signin.institution(session, institution)
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        raise NotFound("institution: no institution with this identifier takes reports here; check its spelling")
    with tenant_session(db, tenant.id) as session:
        concern = _receive(session, kind, ConcernChannel.ANONYMOUS, description, contact_email, None, None)
        return _received(concern, tenant.name)


def _receive(
    session: TenantSession,
    kind: ConcernKind,
    channel: ConcernChannel,
    description: str,
    contact: str,
    account_id: UUID | None,
    actor: Principal | None,
) -> Concern:
    kind = ConcernKind(kind)
    if len(description) > MAX_DESCRIPTION or re.fullmatch(LINES, description) is None:
        raise InvalidInput(f"description: say what happened, in at most {MAX_DESCRIPTION:,} characters")
    if not ADDRESS.fullmatch(contact.strip()):
        raise InvalidInput("contact_email: an email address to be answered at (name@example.org)")
    check_fields({"description": description, "contact_email": contact})
    concern = Concern(tenant_id=session.tenant_id, id=uuid4(), kind=kind.value, channel=channel.value)
    concern.account_id = account_id
    concern.description = _seal(session, concern.id, "description", description)
    concern.contact_address = _seal(session, concern.id, "contact_address", contact.strip())
    session.add(concern)
    session.flush()
    _open_incident(session, concern)
    told = _tell_institution(session, concern)
    audit.record(
        session,
        Action.CONCERN_REPORTED,
        (TARGET, concern.id),
        actor=actor,
        details={"kind": kind.value, "channel": channel.value, "notified": told, "incident_id": concern.incident_id},
    )
    return concern


def _tell_institution(session: TenantSession, concern: Concern) -> int:
    institution = institution_name(session)
    kind = ConcernKind(concern.kind)
    addresses = recipients(session)
    for address in addresses:
        queue_mail(
            session,
            to=address,
            subject=f"[{institution}] report of {KIND_TEXT[kind]} (reference {concern.id})",
            template="concern_reported.txt",
            context={
                "institution": institution,
                "kind_text": KIND_TEXT[kind],
                "reference": str(concern.id),
                "received": mail_time(concern.received_at),
                "channel_text": "a patron signed in to the portal"
                if concern.channel == ConcernChannel.PATRON
                else "someone without an account (the open form)",
                "guidance": GUIDANCE[kind],
            },
            category=MailCategory.SECURITY,
        )
    return len(addresses)


def recipients(session: TenantSession) -> list[str]:
    """Who hears of a report: the security contacts, and every active account holding privacy.concerns.handle
    (through a built-in role that grants it, or a custom role), each address once."""
    found = [*security_contacts(session), *(a for _, a in holders_to_mail(session, Permission.PRIVACY_CONCERNS_HANDLE))]
    return list(dict.fromkeys(a.strip().lower() for a in found))


# -- reading ---------------------------------------------------------------------------------


def list_concerns(session: TenantSession, actor: Principal) -> list[ConcernSummary]:
    """The institution's reports, newest first (no text: reading one is `read`)."""
    authorize(actor, Permission.PRIVACY_CONCERNS_HANDLE)
    rows = session.scalars(
        select(Concern)
        .where(Concern.tenant_id == session.tenant_id)
        .order_by(Concern.received_at.desc(), Concern.id)
        .limit(LIST_LIMIT)
    ).all()
    found = [_summary(row) for row in rows]
    audit.record(session, Action.CONCERN_LISTED, (TARGET, None), actor=actor, details={"count": len(found)})
    return found


def read(session: TenantSession, actor: Principal, concern_id: UUID) -> ConcernDetail:
    """One report with what the reporter wrote and their address (a read of personal data, recorded)."""
    authorize(actor, Permission.PRIVACY_CONCERNS_HANDLE)
    concern = session.scalars(
        select(Concern).where(Concern.tenant_id == session.tenant_id, Concern.id == concern_id)
    ).first()
    if concern is None:
        raise NotFound(f"no report {concern_id}")
    audit.record(session, Action.CONCERN_VIEWED, (TARGET, concern.id), actor=actor)
    return ConcernDetail(
        **_summary(concern).model_dump(),
        description=_unseal(session, concern, "description"),
        contact_email=_unseal(session, concern, "contact_address"),
    )


def forget_received(session: TenantSession, cutoff: datetime, limit: int) -> list[UUID]:
    """Delete at most `limit` reports received before `cutoff`; their ids."""
    concerns = Concern.__table__
    chosen = (
        select(concerns.c.id)
        .where(concerns.c.tenant_id == session.tenant_id, concerns.c.received_at < cutoff)
        .order_by(concerns.c.id)
        .limit(limit)
    )
    removed = session.scalars(
        delete(concerns)
        .where(concerns.c.tenant_id == session.tenant_id, concerns.c.id.in_(chosen.scalar_subquery()))
        .returning(concerns.c.id)
    )
    return list(removed)


# -- helpers ---------------------------------------------------------------------------------


def throttle_key(master: MasterKeys, source_address: str) -> bytes:
    # A count of its own in the address throttle: reporting must not slow the sender's sign-ins or forms.
    return derive(throttle.address_key(master, source_address), KeyPurpose.CONCERN_REPORT)


def _admit(db: Database, source_address: str) -> None:
    try:
        with platform_session(db) as session:
            throttle.admit_address(session, throttle_key(db.master, source_address))
    except throttle.TooManyAttempts:
        details = {"channel": ConcernChannel.ANONYMOUS.value, "reason": "too many reports from this address"}
        audit.record_now(db, Action.CONCERN_REPORTED, (TARGET, None), outcome=Outcome.DENIED, details=details)
        raise


def _seal(session: TenantSession, concern_id: UUID, column: str, value: str) -> bytes:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return encrypt_field(key, session.tenant_id, TABLE, column, concern_id, value)


def _unseal(session: TenantSession, concern: Concern, column: str) -> str:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return decrypt_field(key, session.tenant_id, TABLE, column, concern.id, getattr(concern, column))
