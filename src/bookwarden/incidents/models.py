"""Incidents: platform tables (the incident, its timeline) and tenant tables (what it means for one institution).

The incident itself belongs to the platform (the processor's incident-handling team works it) and is seen
only without tenant context, like the backup catalogue. It names institutions by id (`institutions`), never
a person: who was affected is written per institution, in that institution's own rows (row-level security
forced), so an institution sees only its own subjects and notices, erasure removes a patron from every
incident (foreign keys, ON DELETE CASCADE), and an access package lists the incidents a patron was in.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookwarden.core.classification import (
    COUNTER,
    MACHINE,
    STATE,
    Category,
    Protection,
    not_personal,
    personal,
    pseudonymous,
)
from bookwarden.db.base import Base, tenant_fk
from bookwarden.identity.models import Account  # noqa: F401 - target of the staff foreign key
from bookwarden.library.models import Patron  # noqa: F401 - target of the patron foreign keys

# The handlers' words are shared with every affected institution; people are named by id, per institution,
# in incident_subjects only (the forms say so, and the text is screened for payment data).
HANDLERS_TEXT = not_personal(
    "what happened and what was done, in the handlers' words, shared with every affected institution: names no "
    "person (people affected are listed by id, per institution, in incident_subjects)"
)

BREACH_WINDOW = not_personal("the time window searched for a breach's scope")


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class IncidentCategory(enum.StrEnum):
    UNAUTHORISED_ACCESS = "unauthorised_access"  # someone reached data or an account without authority
    DATA_DISCLOSURE = "data_disclosure"  # data sent, shown or lost to the wrong party
    INTEGRITY = "integrity"  # the audit trail or stored data altered
    AVAILABILITY = "availability"  # data or service lost or at risk (a failed restore drill)
    MALWARE = "malware"
    DENIAL_OF_SERVICE = "denial_of_service"
    MISUSE = "misuse"  # an authorised person acting outside their duties
    FALSE_POSITIVE = "false_positive"  # triaged and found to be no incident
    OTHER = "other"


class IncidentState(enum.StrEnum):
    # NIST SP 800-61: detection and analysis (open, triaged), containment, eradication, recovery,
    # post-incident activity (closed with its review).
    OPEN = "open"
    TRIAGED = "triaged"
    CONTAINED = "contained"
    ERADICATED = "eradicated"
    RECOVERED = "recovered"
    CLOSED = "closed"


class IncidentSource(enum.StrEnum):
    MANUAL = "manual"  # opened by a handler
    ALERT = "alert"  # promoted from a monitoring alert
    RESTORE_DRILL = "restore_drill"  # a restore drill failed
    AUDIT_VERIFY = "audit_verify"  # an audit chain failed verification
    LOCKOUT_STORM = "lockout_storm"  # many accounts locked in a short time
    REPORT = "report"  # a patron's or staff member's report (privacy concerns)


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name="severity_known"),
        CheckConstraint(
            "state IN ('open', 'triaged', 'contained', 'eradicated', 'recovered', 'closed')", name="state_known"
        ),
        CheckConstraint("state <> 'closed' OR review IS NOT NULL", name="closed_has_review"),
        Index("ix_incidents_state_opened", "state", "opened_at"),
        Index("ix_incidents_source", "source", "source_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(200), info=HANDLERS_TEXT)
    summary: Mapped[str] = mapped_column(Text, info=HANDLERS_TEXT)
    severity: Mapped[str] = mapped_column(String(16), info=STATE)
    category: Mapped[str] = mapped_column(String(32), info=STATE)
    state: Mapped[str] = mapped_column(String(16), info=STATE)
    source: Mapped[str] = mapped_column(String(32), info=STATE)
    # What opened it (an alert's id, a drill's id, an audit chain's id, a report's tenant:id) and the key that
    # keeps one automatic source from opening a second incident while the first is still open.
    source_ref: Mapped[str | None] = mapped_column(String(200), info=MACHINE)
    source_key: Mapped[str | None] = mapped_column(String(200), info=MACHINE)
    # The operator principal that opened it (the nil id for the platform's own duties).
    opened_by: Mapped[uuid.UUID] = mapped_column(Uuid, info=pseudonymous("the operator or duty that opened it"))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, info=pseudonymous("the operator account (an incident handler) it is assigned to")
    )
    # The institutions it affects (triage, breach scope): ids only. An institution sees the incident through this.
    institutions: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), default=list, info=MACHINE)
    triaged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    contained_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    eradicated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recovered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Escalation steps already taken while it waited for triage (incidents/jobs.py): each exactly once.
    escalation_step: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    # The post-incident review, required to close: root cause, what was done, lessons, follow-up.
    review: Mapped[dict[str, Any] | None] = mapped_column(JSONB, info=HANDLERS_TEXT)
    # A personal-data breach: when the platform (processor) became aware, and the window searched for its scope.
    breach_marked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    breach_window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=BREACH_WINDOW)
    breach_window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), info=BREACH_WINDOW)
    # What the breach touched, as the handlers listed it: [{"kind": actor|address|tenant|target, "value": ...}].
    breach_targets: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSONB,
        info=pseudonymous(
            "ids of the actors, records and institutions a breach touched, as the audit trail names them, and the "
            "network addresses it came from (an attacker's): what the scope was searched for"
        ),
    )
    breach_data: Mapped[list[str] | None] = mapped_column(
        ARRAY(String(32)), info=not_personal("categories of personal data concerned, from the catalogue")
    )
    # What the notices say was done, and whom to contact (the platform's incident desk).
    breach_measures: Mapped[str | None] = mapped_column(Text, info=HANDLERS_TEXT)
    breach_contact: Mapped[str | None] = mapped_column(
        String(320), info=not_personal("the platform's incident desk: a role address the notices name")
    )


class IncidentEntry(Base):
    """One line of an incident's timeline: every action on it, in order (each also in the audit trail)."""

    __tablename__ = "incident_timeline"
    __table_args__ = (UniqueConstraint("incident_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id"), info=MACHINE)
    seq: Mapped[int] = mapped_column(Integer, info=COUNTER)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32), info=STATE)
    actor_kind: Mapped[str] = mapped_column(String(16), info=STATE)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("who acted: operator or duty"))
    note: Mapped[str | None] = mapped_column(Text, info=HANDLERS_TEXT)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, info=not_personal("states, severities, counts and institution ids; never a person")
    )


class NoticeAudience(enum.StrEnum):
    INSTITUTION = "institution"  # the controller, told by the platform (the processor)
    PATRON = "patron"  # one affected patron (Art. 34), told by the institution or on its instruction


class NoticeDecision(enum.StrEnum):
    SENT = "sent"  # mailed
    PREPARED = "prepared"  # written for the institution to send, waiting for its instruction
    NOT_NOTIFIED = "not_notified"  # decided not to notify, with the reason


class IncidentImpact(Base):
    """An incident as it concerns one institution; for a breach, its clock (GDPR Art. 33)."""

    __tablename__ = "incident_impacts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, info=MACHINE)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Breach clock: the processor became aware; it tells the controller by `processor_due_at` ("without undue
    # delay"); the controller became aware when told and has until `authority_due_at` (72 hours) for its authority.
    aware_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processor_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    institution_told_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    authority_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set once when the institution was still not told (nor a decision taken) at processor_due_at: escalated.
    overdue_escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    subjects: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    # People the breach reached whose records were erased (or deleted) before it was found: a number, never an id.
    erased_subjects: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    # The institution (the controller) acknowledged receipt of the notice: the escalation job stops reminding it.
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, info=pseudonymous("the account that acknowledged the breach notice for the institution")
    )
    # Reminders sent while the notice waited for its acknowledgement (incidents/jobs.py): each exactly once.
    reminders: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    # The notice written for the institution's affected patrons (the same for each), kept with the institution
    # so that it can send it, or have it sent on its instruction, without reaching the platform's tables.
    patron_notice: Mapped[str | None] = mapped_column(Text, info=HANDLERS_TEXT)


class IncidentSubject(Base):
    """A patron an incident affected (listed by handlers, or found in the audit trail in the breach's window)."""

    __tablename__ = "incident_subjects"
    __table_args__ = (
        tenant_fk("incident_subjects", "patron_id", "patrons", "patron"),
        Index("ix_incident_subjects_patron", "tenant_id", "patron_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, info=MACHINE)
    patron_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    found_by: Mapped[str] = mapped_column(String(16), info=STATE)  # listed | audit_trail
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IncidentStaff(Base):
    """A staff account an incident affected (its holder is the institution's to tell): found in the audit trail
    in the breach's window, or an account named as what the breach touched. Deleted with the account."""

    __tablename__ = "incident_staff"
    __table_args__ = (
        tenant_fk("incident_staff", "account_id", "accounts", "account"),
        Index("ix_incident_staff_account", "tenant_id", "account_id"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, info=MACHINE)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    found_by: Mapped[str] = mapped_column(String(16), info=STATE)  # listed | audit_trail
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IncidentNotice(Base):
    """Every breach notice and every decision not to notify, with its reason: one per audience and person."""

    __tablename__ = "incident_notices"
    __table_args__ = (
        tenant_fk("incident_notices", "patron_id", "patrons", "patron"),
        CheckConstraint("audience IN ('institution', 'patron')", name="audience_known"),
        CheckConstraint("decision IN ('sent', 'prepared', 'not_notified')", name="decision_known"),
        CheckConstraint("(audience = 'patron') = (patron_id IS NOT NULL)", name="patron_notice_names_patron"),
        CheckConstraint("decision <> 'not_notified' OR reason IS NOT NULL", name="not_notified_says_why"),
        # A notice cannot be sent twice: one row per incident, audience and person, moved from prepared to sent once.
        UniqueConstraint(
            "tenant_id",
            "incident_id",
            "audience",
            "patron_id",
            name="one_per_audience",
            postgresql_nulls_not_distinct=True,
        ),
    )
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, info=MACHINE)
    audience: Mapped[str] = mapped_column(String(16), info=STATE)
    patron_id: Mapped[uuid.UUID | None]
    decision: Mapped[str] = mapped_column(String(16), info=STATE)
    # Why, in the decider's words (sealed under the institution's key: it may speak of the person).
    reason: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.INCIDENTS, Protection.TENANT_KEY))
    recipients: Mapped[int] = mapped_column(Integer, default=0, info=COUNTER)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, info=pseudonymous("who sent or decided it"))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approval_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, info=pseudonymous("the approved request (maker-checker) a patron notice was sent under")
    )
