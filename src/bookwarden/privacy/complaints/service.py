"""Complaints about the handling of personal data: register, acknowledge, escalate, answer.

The promise (the statement's Dispute Resolution): acknowledged within 24 hours, answered within
45 days. Each complaint carries its deadlines as data (complaint_models.py):

- registering queues the acknowledgement mail at once, through the outbox, in the same
  transaction; the SLA records when it actually left (the outbox's sent_at), not when it was queued;
- a recurring job (`DEADLINES`, hourly) records acknowledgements that left and escalates, once
  each, a complaint whose acknowledgement has not left after 24 hours, that is at risk (35 days
  without an answer) or overdue (45 days): a mail to the institution's complaint handlers (holders
  of the privacy_officer role, or of a custom role granting privacy.complaints.handle; the
  security contacts when there are none) and a flag on the complaint;
- answering closes it and mails the answer to the complainant.

Every transition writes its audit event in the same transaction. The complaint's text never
leaves the database unencrypted except to the complainant and to whoever reads it here.

An answered complaint is kept 3 years after its answer, to show how it was handled, then deleted
(`forget_answered`, daily: privacy/complaints/jobs.py), unless a legal hold keeps all its patron's data.
"""

from __future__ import annotations

import enum
import functools
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, delete, func, or_, select, text

from bookwarden.access.roles.notices import security_contacts
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.clock import db_now
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.core.sensitive import check_fields
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity.accounts.service import account_address, holders_to_mail
from bookwarden.identity.models import Account, AccountKind
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.notify.models import MailCategory, OutboxMessage, OutboxStatus
from bookwarden.notify.service import mail_time, queue_mail
from bookwarden.privacy.complaints.models import Complaint, ComplaintChannel, ComplaintStatus
from bookwarden.privacy.escalations.models import Level, SubjectKind
from bookwarden.privacy.escalations.service import raise_escalation
from bookwarden.privacy.retention.holds import patrons_held_entirely
from bookwarden.tenancy.service import institution_name

log = structlog.get_logger()

TABLE = "complaints"
TARGET = "complaint"
ACKNOWLEDGE_WITHIN = timedelta(hours=24)
AT_RISK_AFTER = timedelta(days=35)
ANSWER_WITHIN = timedelta(days=45)
DEADLINES = "privacy.complaint_deadlines"
DEADLINES_EVERY = timedelta(hours=1)
DEADLINES_BATCH = 500
RETENTION_JOB = "privacy.complaint_retention"
# The registry's "3 years after the answer" (privacy/registry.py COMPLAINTS; privacy/periods.py checks).
KEEP_AFTER_ANSWER = timedelta(days=1095)
LIST_LIMIT = 500


EXPLANATIONS = {
    Level.UNACKNOWLEDGED: (
        "acknowledgement not sent",
        "The automatic acknowledgement has not left within 24 hours (mail delivery failing, or no valid "
        "address). Acknowledge the complaint by another way and check the outbox.",
    ),
    Level.AT_RISK: (
        "answer at risk",
        "The complaint has been open for 35 days without an answer; the answer is due within 45 days.",
    ),
    Level.OVERDUE: (
        "answer overdue",
        "The 45 days to answer have passed. Answer now, and tell the complainant why it took longer.",
    ),
}


class ComplaintSla(BaseModel):
    """A complaint as the SLA view (and the API) shows it: deadlines and flags, never its text."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    status: ComplaintStatus
    channel: ComplaintChannel
    patron_id: UUID | None
    account_id: UUID | None
    created_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None
    at_risk_at: datetime
    due_at: datetime
    days_remaining: int | None
    at_risk: bool
    overdue: bool
    ack_escalated_at: datetime | None
    at_risk_escalated_at: datetime | None
    overdue_escalated_at: datetime | None
    answered_at: datetime | None


@dataclass(frozen=True)
class ComplaintText:
    subject: str
    body: str
    contact_email: str
    answer: str | None


class SlaState(enum.StrEnum):
    """Which complaints the SLA view lists."""

    OPEN = "open"
    AT_RISK = "at_risk"
    OVERDUE = "overdue"
    ANSWERED = "answered"
    ALL = "all"


# -- registering -----------------------------------------------------------------------------


def register_for_patron(
    session: TenantSession,
    actor: Principal,
    patron_id: UUID,
    *,
    subject: str,
    body: str,
    contact_email: str | None = None,
) -> Complaint:
    """Staff take a complaint on a patron's behalf; the acknowledgement goes to `contact_email`,
    or to the address on the patron's record."""
    authorize(actor, Permission.PRIVACY_COMPLAINTS_REGISTER)
    patron = session.get(Patron, (session.tenant_id, patron_id))
    if patron is None:
        raise NotFound(f"no patron {patron_id}")
    address = contact_email or _patron_email(session, patron)
    if not address:
        raise InvalidInput(
            "contact_email: the patron has no email address on file; give the address the acknowledgement "
            "and the answer should go to"
        )
    return _register(session, actor, ComplaintChannel.STAFF, patron.id, None, subject, body, address)


def register_own(
    session: TenantSession, actor: Principal, *, subject: str, body: str, contact_email: str | None = None
) -> Complaint:
    """A signed-in patron registers their own complaint."""
    authorize(actor, Permission.SELF_SERVICE)
    account = _patron_account(session, actor)
    address = contact_email or account_address(session, account)
    if not address:
        raise InvalidInput("contact_email: your account has no email address; give one to receive the answer at")
    return _register(session, actor, ComplaintChannel.PATRON, account.patron_id, account.id, subject, body, address)


def _register(
    session: TenantSession,
    actor: Principal,
    channel: ComplaintChannel,
    patron_id: UUID | None,
    account_id: UUID | None,
    subject: str,
    body: str,
    address: str,
) -> Complaint:
    check_fields({"subject": subject, "body": body})  # no payment or bank data, even in a complaint
    complaint = Complaint(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        patron_id=patron_id,
        account_id=account_id,
        channel=channel.value,
        registered_by=actor.id,
        status=ComplaintStatus.OPEN.value,
    )
    complaint.subject, complaint.body, complaint.contact_address = (
        _seal(session, complaint.id, column, value)
        for column, value in (("subject", subject), ("body", body), ("contact_address", address))
    )
    # The database clock, as for every deadline: workers and HTTP processes share it.
    now = db_now(session)
    complaint.created_at = now
    complaint.ack_due_at = now + ACKNOWLEDGE_WITHIN
    complaint.at_risk_at = now + AT_RISK_AFTER
    complaint.due_at = now + ANSWER_WITHIN
    session.add(complaint)
    session.flush()
    institution = institution_name(session)
    acknowledgement = queue_mail(
        session,
        to=address,
        subject=f"[{institution}] your complaint was received (reference {complaint.id})",
        template="complaint_acknowledged.txt",
        context={
            "institution": institution,
            "reference": str(complaint.id),
            "received": mail_time(complaint.created_at),
            "due": mail_time(complaint.due_at),
            "summary": subject,
        },
        category=MailCategory.SERVICE,
    )
    complaint.ack_message_id = acknowledgement.id
    audit.record(
        session,
        Action.COMPLAINT_REGISTERED,
        (TARGET, complaint.id),
        actor=actor,
        details={
            "channel": channel.value,
            "patron_id": patron_id,
            "account_id": account_id,
            "due_at": complaint.due_at.isoformat(),
            "ack_message_id": acknowledgement.id,
        },
    )
    return complaint


# -- reading ---------------------------------------------------------------------------------


def sla_view(session: TenantSession, actor: Principal, state: SlaState = SlaState.OPEN) -> list[ComplaintSla]:
    """Complaints in `state` with their deadlines and days remaining, the most urgent first."""
    authorize(actor, Permission.PRIVACY_COMPLAINTS_HANDLE)
    state = SlaState(state)
    now = db_now(session)
    query = _sla_query(session)
    if state in (SlaState.OPEN, SlaState.AT_RISK, SlaState.OVERDUE):
        query = query.where(Complaint.status == ComplaintStatus.OPEN.value)
    if state == SlaState.AT_RISK:
        query = query.where(Complaint.at_risk_at <= now, Complaint.due_at > now)
    elif state == SlaState.OVERDUE:
        query = query.where(Complaint.due_at <= now)
    elif state == SlaState.ANSWERED:
        query = query.where(Complaint.status == ComplaintStatus.ANSWERED.value)
    found = [_sla(row, now) for row in session.execute(query.order_by(Complaint.due_at).limit(LIST_LIMIT))]
    details = {"state": state, "count": len(found), "ids": [c.id for c in found]}
    audit.record(session, Action.COMPLAINT_LISTED, actor=actor, details=details)
    return found


def own_complaints(session: TenantSession, actor: Principal) -> list[ComplaintSla]:
    """The signed-in patron's own complaints and where each stands."""
    authorize(actor, Permission.SELF_SERVICE)
    account = _patron_account(session, actor)
    now = db_now(session)
    query = _sla_query(session).where(Complaint.account_id == account.id).order_by(Complaint.created_at.desc())
    found = [_sla(row, now) for row in session.execute(query.limit(LIST_LIMIT))]
    details = {"state": "own", "count": len(found), "ids": [c.id for c in found]}
    audit.record(session, Action.COMPLAINT_LISTED, actor=actor, details=details)
    return found


def sla_of(session: TenantSession, complaint_id: UUID) -> ComplaintSla:
    """Where one complaint stands, to answer the write that just changed it (that write is audited)."""
    row = session.execute(_sla_query(session).where(Complaint.id == complaint_id)).first()
    if row is None:
        raise NotFound(f"no complaint {complaint_id}")
    return _sla(row, db_now(session))


def read(session: TenantSession, actor: Principal, complaint_id: UUID) -> tuple[ComplaintSla, ComplaintText]:
    """One complaint with its text, opened for a complaint handler (a read of personal data, audited)."""
    authorize(actor, Permission.PRIVACY_COMPLAINTS_HANDLE)
    row = session.execute(_sla_query(session).where(Complaint.id == complaint_id)).first()
    if row is None:
        raise NotFound(f"no complaint {complaint_id}")
    complaint = row[0]
    opened = ComplaintText(
        subject=_unseal(session, complaint, "subject"),
        body=_unseal(session, complaint, "body"),
        contact_email=_unseal(session, complaint, "contact_address"),
        answer=_unseal(session, complaint, "answer"),
    )
    audit.record(session, Action.COMPLAINT_VIEWED, (TARGET, complaint.id), actor=actor)
    return _sla(row, db_now(session)), opened


# -- answering -------------------------------------------------------------------------------


def answer(session: TenantSession, actor: Principal, complaint_id: UUID, answer_text: str) -> Complaint:
    """Answer a complaint: it is closed, and the answer is mailed to the complainant."""
    authorize(actor, Permission.PRIVACY_COMPLAINTS_HANDLE)
    complaint = session.scalars(
        select(Complaint)
        .where(Complaint.tenant_id == session.tenant_id, Complaint.id == complaint_id)
        .with_for_update()
    ).first()
    if complaint is None:
        raise NotFound(f"no complaint {complaint_id}")
    if complaint.status != ComplaintStatus.OPEN:
        raise Conflict(f"complaint {complaint_id} was answered already, at {mail_time(complaint.answered_at)} UTC")
    check_fields({"answer": answer_text})
    now = db_now(session)
    complaint.answer = _seal(session, complaint.id, "answer", answer_text)
    complaint.answered_at, complaint.answered_by = now, actor.id
    complaint.status = ComplaintStatus.ANSWERED.value
    institution = institution_name(session)
    mailed = queue_mail(
        session,
        to=_unseal(session, complaint, "contact_address"),
        subject=f"[{institution}] answer to your complaint (reference {complaint.id})",
        template="complaint_answered.txt",
        context={
            "institution": institution,
            "reference": str(complaint.id),
            "received": mail_time(complaint.created_at),
            "answered": mail_time(now),
            "answer": answer_text,
        },
        category=MailCategory.SERVICE,
    )
    audit.record(
        session,
        Action.COMPLAINT_ANSWERED,
        (TARGET, complaint.id),
        actor=actor,
        details={
            "on_time": now <= complaint.due_at,
            "days_taken": (now - complaint.created_at).days,
            "answer_message_id": mailed.id,
        },
    )
    return complaint


# -- the deadline job ------------------------------------------------------------------------


@dataclass
class DeadlineReport:
    acknowledged: int = 0
    escalated: int = 0


def process_deadlines(db: Database, batch: int = DEADLINES_BATCH) -> DeadlineReport:
    """Record acknowledgements that left; escalate what is unacknowledged, at risk or overdue.

    Idempotent: each escalation is flagged on the complaint in the transaction that queues its
    mail, and a complaint another run holds is skipped (SKIP LOCKED), so it never goes out twice.
    """
    with platform_session(db) as session:
        due = session.execute(
            text("SELECT tenant_id, complaint_id FROM bookwarden_complaints_due(:n)"), {"n": batch}
        ).all()
    per_tenant: dict[UUID, list[UUID]] = defaultdict(list)
    for tenant_id, complaint_id in due:
        per_tenant[tenant_id].append(complaint_id)
    report = DeadlineReport()
    for tenant_id, complaint_ids in per_tenant.items():
        with tenant_session(db, tenant_id) as session:
            recipients = EscalationRecipients(session)
            for complaint_id in complaint_ids:
                _settle(session, complaint_id, report, recipients)
    return report


class EscalationRecipients:
    """Whom one tenant's escalations go to, looked up (and decrypted) once per run, not per complaint. Data-subject
    requests (privacy/requests/service.py) remind and escalate to exactly these people too."""

    def __init__(self, session: TenantSession):
        self.session = session

    @functools.cached_property
    def handlers(self) -> list[tuple[UUID, str]]:
        return complaint_handlers(self.session)

    @functools.cached_property
    def addresses(self) -> list[str]:
        # Nobody handles complaints: the security contacts are the institution's last resort, told rather than nobody.
        return [address for _, address in self.handlers] or security_contacts(self.session)


def _settle(
    session: TenantSession, complaint_id: UUID, report: DeadlineReport, recipients: EscalationRecipients
) -> None:
    complaint = session.scalars(
        select(Complaint)
        .where(Complaint.tenant_id == session.tenant_id, Complaint.id == complaint_id)
        .with_for_update(skip_locked=True)
    ).first()
    if complaint is None:
        return  # another run holds it
    now = db_now(session)
    if complaint.acknowledged_at is None and complaint.ack_message_id is not None:
        sent_at = session.scalar(
            select(OutboxMessage.sent_at).where(
                OutboxMessage.tenant_id == session.tenant_id,
                OutboxMessage.id == complaint.ack_message_id,
                OutboxMessage.status == OutboxStatus.SENT,
            )
        )
        if sent_at is not None:
            complaint.acknowledged_at = sent_at
            report.acknowledged += 1
            audit.record(
                session,
                Action.COMPLAINT_ACKNOWLEDGED,
                (TARGET, complaint.id),
                actor=SYSTEM,
                details={"on_time": sent_at <= complaint.ack_due_at, "message_id": complaint.ack_message_id},
            )
    if complaint.status != ComplaintStatus.OPEN:
        return
    if complaint.acknowledged_at is None and complaint.ack_escalated_at is None and complaint.ack_due_at <= now:
        complaint.ack_escalated_at = now
        _escalate(session, complaint, Level.UNACKNOWLEDGED, now, recipients)
        report.escalated += 1
    if complaint.overdue_escalated_at is None and complaint.due_at <= now:
        complaint.overdue_escalated_at = now
        _escalate(session, complaint, Level.OVERDUE, now, recipients)
        report.escalated += 1
    elif complaint.at_risk_escalated_at is None and complaint.at_risk_at <= now < complaint.due_at:
        complaint.at_risk_escalated_at = now
        _escalate(session, complaint, Level.AT_RISK, now, recipients)
        report.escalated += 1


def _escalate(
    session: TenantSession, complaint: Complaint, level: Level, now: datetime, recipients: EscalationRecipients
) -> None:
    handlers, addresses = recipients.handlers, recipients.addresses
    fallback = not handlers
    institution = institution_name(session)
    level_text, explanation = EXPLANATIONS[level]
    escalation = raise_escalation(session, SubjectKind.COMPLAINT, complaint.id, level, complaint.due_at)
    for address in addresses:
        queue_mail(
            session,
            to=address,
            subject=f"[{institution}] privacy complaint {level_text} (reference {complaint.id})",
            template="complaint_escalated.txt",
            context={
                "institution": institution,
                "level_text": level_text,
                "explanation": explanation,
                "reference": str(complaint.id),
                "received": mail_time(complaint.created_at),
                "acknowledged": mail_time(complaint.acknowledged_at) if complaint.acknowledged_at else "not yet",
                "due": mail_time(complaint.due_at),
                "days_remaining": _days_remaining(complaint.due_at, now),
            },
            category=MailCategory.SERVICE,
        )
    if not addresses:
        log.warning("complaint escalation has no recipient", tenant_id=str(session.tenant_id), level=level)
    audit.record(
        session,
        Action.COMPLAINT_ESCALATED,
        (TARGET, complaint.id),
        actor=SYSTEM,
        details={
            "level": level,
            "notified_accounts": [account_id for account_id, _ in handlers],
            "security_contacts_notified": len(addresses) if fallback else 0,
            "dpo_escalation": str(escalation),
        },
    )


def forget_answered(session: TenantSession, cutoff: datetime, limit: int) -> list[UUID]:
    """Delete at most `limit` complaints answered before `cutoff`; their ids. Open complaints stay whatever
    their age, and so does a complaint about a patron all of whose data a legal hold keeps. Escalations to
    the platform's DPO name the complaint by id only and stay (their record of oversight reads "gone")."""
    complaints = Complaint.__table__
    not_held = or_(complaints.c.patron_id.is_(None), complaints.c.patron_id.not_in(patrons_held_entirely()))
    chosen = (
        select(complaints.c.id)
        .where(
            complaints.c.tenant_id == session.tenant_id,
            complaints.c.status == ComplaintStatus.ANSWERED.value,
            complaints.c.answered_at < cutoff,
            not_held,
        )
        .order_by(complaints.c.id)
        .limit(limit)
    )
    removed = session.scalars(
        delete(complaints)
        .where(complaints.c.tenant_id == session.tenant_id, complaints.c.id.in_(chosen.scalar_subquery()))
        .returning(complaints.c.id)
    )
    return list(removed)


def complaint_handlers(session: TenantSession) -> list[tuple[UUID, str]]:
    """(account id, address) of every active account that handles complaints and has an address: holders of
    privacy.complaints.handle through any role (the privacy officer's, or a custom one)."""
    return holders_to_mail(session, Permission.PRIVACY_COMPLAINTS_HANDLE)


# -- helpers ---------------------------------------------------------------------------------


def _sla_query(session: TenantSession) -> Select:
    # The acknowledgement counts from when it left; until the job has copied that time onto the
    # complaint, the view reads it from the outbox, so it is never behind what happened.
    sent = (
        select(OutboxMessage.sent_at)
        .where(
            OutboxMessage.tenant_id == Complaint.tenant_id,
            OutboxMessage.id == Complaint.ack_message_id,
            OutboxMessage.status == OutboxStatus.SENT,
        )
        .scalar_subquery()
    )
    return select(Complaint, func.coalesce(Complaint.acknowledged_at, sent)).where(
        Complaint.tenant_id == session.tenant_id
    )


def _sla(row, now: datetime) -> ComplaintSla:
    complaint, acknowledged_at = row
    open_ = complaint.status == ComplaintStatus.OPEN
    return ComplaintSla(
        id=complaint.id,
        status=ComplaintStatus(complaint.status),
        channel=ComplaintChannel(complaint.channel),
        patron_id=complaint.patron_id,
        account_id=complaint.account_id,
        created_at=complaint.created_at,
        ack_due_at=complaint.ack_due_at,
        acknowledged_at=acknowledged_at,
        at_risk_at=complaint.at_risk_at,
        due_at=complaint.due_at,
        days_remaining=_days_remaining(complaint.due_at, now) if open_ else None,
        at_risk=open_ and complaint.at_risk_at <= now < complaint.due_at,
        overdue=open_ and complaint.due_at <= now,
        ack_escalated_at=complaint.ack_escalated_at,
        at_risk_escalated_at=complaint.at_risk_escalated_at,
        overdue_escalated_at=complaint.overdue_escalated_at,
        answered_at=complaint.answered_at,
    )


def _days_remaining(due_at: datetime, now: datetime) -> int:
    """Whole days left, rounded up: 45 on the day it arrives, 0 on the day it is due, negative after."""
    return math.ceil((due_at - now).total_seconds() / 86400)


def _patron_account(session: TenantSession, actor: Principal) -> Account:
    account = session.get(Account, (session.tenant_id, actor.id)) if actor.kind is PrincipalKind.ACCOUNT else None
    if account is None or account.kind is not AccountKind.PATRON:
        raise Forbidden("only a patron signed in to their own account registers a complaint this way")
    return account


def _patron_email(session: TenantSession, patron: Patron) -> str | None:
    # None when erased, or when the address is a self-registration's not yet confirmed by its owner.
    return library.email_on_file(session, patron)


def _seal(session: TenantSession, complaint_id: UUID, column: str, value: str) -> bytes:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return encrypt_field(key, session.tenant_id, TABLE, column, complaint_id, value)


def _unseal(session: TenantSession, complaint: Complaint, column: str) -> str | None:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return decrypt_field(key, session.tenant_id, TABLE, column, complaint.id, getattr(complaint, column))
