"""What an incident means for each institution: its subjects, a breach's scope and clocks, and every notice.

A flow module (it takes `db`): the incident is the platform's (platform transaction), what it means for an
institution is that institution's (its own transaction, its own chain of audit events). Each step is
idempotent (upserts keyed by incident and institution), so a step interrupted halfway is finished by running
it again.

**Breach scope.** Marking an incident a personal-data breach names what it touched (`targets`: actor ids,
network addresses, institutions, record ids) and a time window. The audit trail of every institution
(only the named ones, when institutions are all that is named) is searched for events in the window whose
actor, grant, target or source address is one of them, or any event of a named institution: the institutions
with such events are affected, and so is every person those events were about. The records they acted on
(their targets, the patron a library record's event names, the ids a list showed, and the ids named) are
traced to their people by the privacy registry's subject links (privacy/subjects/data.py `owners`): patrons,
and staff accounts. A person whose records were erased (or deleted) before is counted, never named. Only ids
are read from the trail (never a value), and the search is recorded in each institution's own chain
(breach.marked): a platform duty on the institutions' records, as the audit-chain verification is, flagged
where the institution reads it.

**Clocks (GDPR Art. 33).** The platform (processor) tells each institution (controller) "without undue delay":
our promise is within PROCESSOR_NOTICE_WITHIN of becoming aware (processor_due_at). The institution then has
72 hours from being told to notify its supervisory authority (authority_due_at). Both are shown to the
institution with the incident.

**Notices.** Each affected institution gets a notice from a template (what happened, which data, what was
done, whom to contact, its deadline) at its security contacts and everyone holding incidents.read, or a
decision not to notify it, with the reason: never both, never twice (one row per incident and audience, moved
once). Each affected patron gets a notice prepared for the institution to send; the institution sends it
itself, or asks for it to be sent here (maker-checker: incidents/approvals.py), or decides not to notify
(Art. 34(3)), with the reason. Reasons are sealed under the institution's key. The institution acknowledges
receipt of its notice; until it does, the escalation job reminds it (REMIND_EVERY, at most REMINDERS times).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from bookwarden.access.roles.notices import security_contacts
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.classification import Category, SubjectKind
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity.accounts.service import holders_to_mail
from bookwarden.incidents import service
from bookwarden.incidents.models import (
    Incident,
    IncidentImpact,
    IncidentNotice,
    IncidentStaff,
    IncidentState,
    IncidentSubject,
    NoticeAudience,
    NoticeDecision,
)
from bookwarden.jobs.service import enqueue
from bookwarden.library.models import Patron
from bookwarden.library.records import email_on_file
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import mail_time, queue_mail
from bookwarden.privacy.registry import POLICIES
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects.models import ErasurePolicy
from bookwarden.tenancy.models import Tenant
from bookwarden.tenancy.service import institution_name

# Our published "without undue delay" (Art. 33(2)): an institution is told within this of the platform knowing.
PROCESSOR_NOTICE_WITHIN = timedelta(hours=24)
# Art. 33(1): the controller notifies its supervisory authority within 72 hours of becoming aware.
AUTHORITY_WITHIN = timedelta(hours=72)
# Until the institution acknowledges the notice, it is reminded this long after being told, and again, up to
# REMINDERS times (incidents/jobs.py runs it with the escalation).
REMIND_EVERY = timedelta(hours=12)
REMINDERS = 3
NOTICES_TABLE = "incident_notices"
TARGET_KINDS = ("actor", "address", "tenant", "target")
MAX_TARGETS = 200


# -- triage: the institutions and subjects named by the handlers --------------------------------


@dataclass(frozen=True)
class Named:
    """A patron the handlers name as affected: which institution, which patron (by subject id)."""

    institution: UUID
    patron_id: UUID


def triage(
    db: Database,
    actor: Principal,
    incident_id: UUID,
    *,
    severity,
    category,
    institutions: Iterable[UUID] = (),
    subjects: Iterable[Named] = (),
    note: str | None = None,
) -> service.IncidentDetail:
    """Triage (incidents/service.py) and, for each institution named, its impact and subjects in its own rows.

    Every institution and patron is checked before anything is written: a wrong id changes nothing."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    with platform_session(db) as session:
        service.get(session, incident_id)  # an unknown incident is not found before anything else is checked
    subjects = list(subjects)
    named = set(institutions) | {s.institution for s in subjects}
    _check_named(db, named, subjects)
    with platform_session(db) as session:
        incident, _ = service.triage(
            session,
            actor,
            incident_id,
            severity=severity,
            category=category,
            institutions=named,
            subjects=len(subjects),
            note=note,
        )
    for institution in sorted(named):
        patrons = {s.patron_id for s in subjects if s.institution == institution}
        with tenant_session(db, institution) as session:
            _affect(session, actor, incident.id, patrons, found_by="listed")
    with platform_session(db) as session:
        return service.detail_of(session, service.get(session, incident.id))


def _check_named(db: Database, institutions: set[UUID], subjects: list[Named]) -> None:
    with platform_session(db) as session:
        known = set(session.scalars(select(Tenant.id).where(Tenant.id.in_(institutions))))
    if unknown := sorted(institutions - known):
        raise NotFound(f"institutions: no institution {', '.join(map(str, unknown))}")
    for institution in sorted(institutions):
        wanted = {s.patron_id for s in subjects if s.institution == institution}
        if not wanted:
            continue
        with tenant_session(db, institution) as session:
            found = set(
                session.scalars(select(Patron.id).where(Patron.tenant_id == institution, Patron.id.in_(wanted)))
            )
        if missing := sorted(wanted - found):
            raise NotFound(f"subjects: institution {institution} has no patron {', '.join(map(str, missing))}")


def _affect(
    session: TenantSession,
    actor: Principal,
    incident_id: UUID,
    patrons: set[UUID],
    *,
    found_by: str,
    staff: set[UUID] = frozenset(),
    erased: int = 0,
) -> tuple[IncidentImpact, int]:
    """The institution's impact row (once), its patrons and staff (each once) and how many people it reached
    whose records were erased before (a number only); recorded in its chain."""
    session.execute(
        insert(IncidentImpact)
        .values(tenant_id=session.tenant_id, incident_id=incident_id, subjects=0)
        .on_conflict_do_nothing()
    )
    added = _add(session, IncidentSubject, IncidentSubject.patron_id, "patron_id", incident_id, patrons, found_by)
    staff_added = _add(session, IncidentStaff, IncidentStaff.account_id, "account_id", incident_id, staff, found_by)
    impact = _impact(session, incident_id)
    impact.subjects = session.scalar(
        select(func.count())
        .select_from(IncidentSubject)
        .where(IncidentSubject.tenant_id == session.tenant_id, IncidentSubject.incident_id == incident_id)
    )
    impact.erased_subjects = max(impact.erased_subjects or 0, erased)
    details = {"subjects_added": added, "subjects": impact.subjects, "found_by": found_by}
    if staff_added or erased:
        details |= {"staff_added": staff_added, "erased_subjects": impact.erased_subjects}
    audit.record(session, Action.INCIDENT_AFFECTED, (service.TARGET, incident_id), actor=actor, details=details)
    return impact, added


def _add(session: TenantSession, model, column, name: str, incident_id: UUID, ids: set[UUID], found_by: str) -> int:
    """Each id once (an existing row is kept as it was found first): how many were new."""
    if not ids:
        return 0
    rows = [
        {"tenant_id": session.tenant_id, "incident_id": incident_id, name: i, "found_by": found_by} for i in sorted(ids)
    ]
    return len(session.execute(insert(model).values(rows).on_conflict_do_nothing().returning(column)).all())


def _impact(session: TenantSession, incident_id: UUID) -> IncidentImpact:
    impact = session.scalars(
        select(IncidentImpact)
        .where(IncidentImpact.tenant_id == session.tenant_id, IncidentImpact.incident_id == incident_id)
        .with_for_update()
    ).first()
    if impact is None:
        raise NotFound(f"no incident {incident_id} affects this institution")
    return impact


# -- a personal-data breach ----------------------------------------------------------------------


@dataclass(frozen=True)
class BreachTarget:
    kind: str  # actor | address | tenant | target
    value: str


class InstitutionScope(BaseModel):
    institution: UUID
    events: int
    subjects: list[UUID]  # patrons
    staff: list[UUID]  # staff accounts
    erased_subjects: int  # people reached whose records were erased before: a number, never an id
    processor_due_at: datetime
    notified: bool


class BreachScope(BaseModel):
    incident_id: UUID
    aware_at: datetime
    window_start: datetime
    window_end: datetime
    institutions: list[InstitutionScope]


@dataclass
class _Found:
    events: int = 0
    patrons: set[UUID] = field(default_factory=set)
    staff: set[UUID] = field(default_factory=set)
    erased: int = 0

    @property
    def anyone(self) -> bool:
        return bool(self.patrons or self.staff or self.erased)


def mark_breach(
    db: Database,
    actor: Principal,
    incident_id: UUID,
    *,
    since: datetime,
    until: datetime | None = None,
    targets: Iterable[BreachTarget],
    data: Iterable[Category | str],
    measures: str,
    contact: str,
    notify: bool = True,
) -> BreachScope:
    """Mark the incident a personal-data breach: find whom it affected, start each institution's clock, and
    (unless `notify` is False, to review the scope first) send each institution its notice."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    with platform_session(db) as session:
        service.get(session, incident_id)  # an unknown incident is not found before anything else is checked
    targets = _checked_targets(targets)
    data = _checked_data(data)
    service._check_text(measures=measures)
    if not measures or not measures.strip():
        raise InvalidInput("measures: say what was done to contain the breach and protect the people affected")
    if not isinstance(contact, str) or not 3 <= len(contact.strip()) <= 320 or "\n" in contact:
        raise InvalidInput("contact: whom the institution contacts about the breach (an address or a line)")
    service._check_text(contact=contact)
    with platform_session(db) as session:
        incident = service.get(session, incident_id, lock=True)
        if incident.state == IncidentState.CLOSED.value:
            raise Conflict(f"incident {incident.id} is closed")
        if incident.breach_marked_at is not None:
            raise Conflict(f"incident {incident.id} was marked a breach at {incident.breach_marked_at.isoformat()}")
        # The moment of marking, not the transaction's start: events are stamped when they happen (audit/record.py).
        now = session.scalar(select(func.clock_timestamp()))
        until = until or now
        if since.tzinfo is None or until.tzinfo is None or since >= until:
            raise InvalidInput("since, until: a window with a time zone, since before until")
        tenants = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
    listed_tenants = {UUID(t.value) for t in targets if t.kind == "tenant"}
    if unknown := sorted(listed_tenants - set(tenants)):
        raise NotFound(f"targets: no institution {', '.join(map(str, unknown))}")
    ids = [UUID(t.value) for t in targets if t.kind in ("actor", "target")]
    addresses = [t.value for t in targets if t.kind == "address"]
    # Only the named institutions when nothing but institutions is named; otherwise every one is searched.
    searched = sorted(listed_tenants) if listed_tenants and not ids and not addresses else tenants
    found: dict[UUID, _Found] = {}
    for tenant_id in searched:
        with tenant_session(db, tenant_id) as session:
            hit = _search(session, since, until, ids, addresses, whole=tenant_id in listed_tenants)
        if hit.events or hit.anyone or tenant_id in listed_tenants:
            found[tenant_id] = hit
    with platform_session(db) as session:
        incident = service.get(session, incident_id, lock=True)
        if incident.breach_marked_at is not None:  # marked meanwhile by someone else
            raise Conflict(f"incident {incident.id} was marked a breach at {incident.breach_marked_at.isoformat()}")
        incident.breach_marked_at = now
        incident.breach_window_start, incident.breach_window_end = since, until
        incident.breach_targets = [{"kind": t.kind, "value": t.value} for t in targets]
        incident.breach_data = [c.value for c in data]
        incident.breach_measures, incident.breach_contact = measures.strip(), contact.strip()
        incident.institutions = sorted(set(incident.institutions or []) | set(found))
        service.act(
            session,
            incident,
            actor,
            Action.BREACH_MARKED,
            "breach_marked",
            None,
            institutions=[str(i) for i in sorted(found)],
            subjects=sum(len(f.patrons) for f in found.values()),
            staff=sum(len(f.staff) for f in found.values()),
            erased_subjects=sum(f.erased for f in found.values()),
            data=[c.value for c in data],
        )
    scope = []
    for tenant_id, hit in sorted(found.items()):
        with tenant_session(db, tenant_id) as session:
            impact, _ = _affect(
                session, actor, incident_id, hit.patrons, found_by="audit_trail", staff=hit.staff, erased=hit.erased
            )
            _start_clock(session, actor, impact, now, hit)
            subjects, staff = _subject_ids(session, incident_id), _staff_ids(session, incident_id)
        scope.append(
            InstitutionScope(
                institution=tenant_id,
                events=hit.events,
                subjects=subjects,
                staff=staff,
                erased_subjects=impact.erased_subjects,
                processor_due_at=now + PROCESSOR_NOTICE_WITHIN,
                notified=False,
            )
        )
    result = BreachScope(
        incident_id=incident_id, aware_at=now, window_start=since, window_end=until, institutions=scope
    )
    if notify:
        for item in result.institutions:
            notify_institution(db, actor, incident_id, item.institution)
            item.notified = True
    return result


# Ids only: the record each event acted on, the patron a library record's event names as its owner, and the
# ids a list showed (audit/record.py keeps details to ids, counts and field names).
_SEARCH = text(
    """
    SELECT e.target_id, e.details->>'patron_id' AS owner,
           CASE WHEN jsonb_typeof(e.details->'ids') = 'array' THEN e.details->'ids' END AS shown
    FROM audit_events e LEFT JOIN audit_event_contexts c USING (tenant_id, seq)
    WHERE e.tenant_id = :tenant AND e.occurred_at >= :since AND e.occurred_at <= :until
      AND (:whole
           OR e.actor_id = ANY(:ids) OR e.target_id = ANY(:ids) OR e.grant_id = ANY(:ids)
           OR coalesce(e.source_address, c.source_address) = ANY(:addresses))
    """
)
# The trail's record that a person's data was removed: by erasure, by deletion of the patron or the account.
_REMOVED = text(
    """
    SELECT DISTINCT target_id FROM audit_events
    WHERE tenant_id = :tenant AND action = ANY(:actions) AND target_id = ANY(:ids)
    """
)
REMOVALS = (Action.PATRON_ERASED, Action.PATRON_DELETED, Action.ACCOUNT_DELETED)


def _search(
    session: TenantSession, since: datetime, until: datetime, ids: list[UUID], addresses: list[str], *, whole: bool
) -> _Found:
    """The institution's events in the window touching the targets: how many, and whom they were about."""
    rows = session.execute(
        _SEARCH,
        {
            "tenant": session.tenant_id,
            "since": since,
            "until": until,
            "ids": ids,
            "addresses": addresses,
            "whole": whole,
        },
    ).all()
    # What the handlers named is traced too: a named actor's account is affected (its credentials were used).
    records = set(ids)
    for row in rows:
        records |= {row.target_id} if row.target_id is not None else set()
        records |= _uuids([row.owner, *(row.shown or [])])
    return _trace(session, records, events=len(rows))


def _trace(session: TenantSession, records: set[UUID], *, events: int) -> _Found:
    """Whom the records are about, by the privacy registry's subject links (privacy/subjects/data.py `owners`):
    loans, posts, searches, reading lists, sessions, requests... lead to their patron; a staff account is its own
    subject. A record whose person was erased (or deleted) before is counted, never named: its id is not kept."""
    owners = subject_data.owners(session, records)
    placeholder = session.scalar(
        select(ErasurePolicy.anonymous_author_id).where(ErasurePolicy.tenant_id == session.tenant_id)
    )
    found = _Found(events=events)
    for subjects in owners.values():
        for kind, subject_id in subjects:
            if kind is SubjectKind.ACCOUNT:
                found.staff.add(subject_id)
            elif subject_id != placeholder:  # the author of posts kept after erasure is nobody
                found.patrons.add(subject_id)
    gone = sorted(records - set(owners))
    if gone:
        removed = session.execute(
            _REMOVED, {"tenant": session.tenant_id, "ids": gone, "actions": [a.value for a in REMOVALS]}
        ).all()
        found.erased = len(removed)
    return found


def _uuids(values: Iterable[Any]) -> set[UUID]:
    found = set()
    for value in values:
        try:
            found.add(UUID(str(value)))
        except ValueError:
            continue  # not an id: ignored
    return found


def _start_clock(
    session: TenantSession, actor: Principal, impact: IncidentImpact, aware: datetime, hit: _Found
) -> None:
    if impact.aware_at is None:
        impact.aware_at = aware
        impact.processor_due_at = aware + PROCESSOR_NOTICE_WITHIN
    audit.record(
        session,
        Action.BREACH_MARKED,
        (service.TARGET, impact.incident_id),
        actor=actor,
        details={
            "events_matched": hit.events,
            "subjects": impact.subjects,
            "staff": len(hit.staff),
            "erased_subjects": impact.erased_subjects,
            "processor_due_at": impact.processor_due_at.isoformat(),
            # A platform duty on the institution's trail (ids only), flagged where the institution reads it.
            "platform_search": True,
        },
    )


def _staff_ids(session: TenantSession, incident_id: UUID) -> list[UUID]:
    return list(
        session.scalars(
            select(IncidentStaff.account_id)
            .where(IncidentStaff.tenant_id == session.tenant_id, IncidentStaff.incident_id == incident_id)
            .order_by(IncidentStaff.account_id)
        )
    )


def _subject_ids(session: TenantSession, incident_id: UUID) -> list[UUID]:
    return list(
        session.scalars(
            select(IncidentSubject.patron_id)
            .where(IncidentSubject.tenant_id == session.tenant_id, IncidentSubject.incident_id == incident_id)
            .order_by(IncidentSubject.patron_id)
        )
    )


def _checked_targets(targets: Iterable[BreachTarget]) -> list[BreachTarget]:
    checked = []
    for target in targets:
        if target.kind not in TARGET_KINDS:
            raise InvalidInput(f"targets: kind {target.kind!r} is none of {', '.join(TARGET_KINDS)}")
        value = str(target.value).strip()
        try:
            value = str(ipaddress.ip_address(value)) if target.kind == "address" else str(UUID(value))
        except ValueError:
            what = "an IP address" if target.kind == "address" else "an id"
            raise InvalidInput(f"targets: {target.kind} {value!r} is not {what}") from None
        checked.append(BreachTarget(target.kind, value))
    if not checked or len(checked) > MAX_TARGETS:
        raise InvalidInput(f"targets: name what the breach touched (1 to {MAX_TARGETS} actors, addresses, ...)")
    return list(dict.fromkeys(checked))


def _checked_data(data: Iterable[Category | str]) -> list[Category]:
    try:
        checked = sorted({Category(c) for c in data})
    except ValueError:
        raise InvalidInput(f"data: categories among {', '.join(c.value for c in Category)}") from None
    if not checked:
        raise InvalidInput("data: which categories of personal data the breach concerns")
    return checked


# -- notices to institutions -------------------------------------------------------------------


def notify_institution(db: Database, actor: Principal, incident_id: UUID, institution: UUID) -> int:
    """Send the institution its breach notice (once); prepare its patrons' notices. The number of recipients."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    with platform_session(db) as session:
        incident = _breach(session, incident_id, institution)
    with tenant_session(db, institution) as session:
        impact = _impact(session, incident_id)
        _refuse_decided(session, incident_id)
        now = session.scalar(select(func.clock_timestamp()))
        subjects = _subject_ids(session, incident_id)
        recipients = breach_recipients(session)
        context = _notice_context(session, incident, impact, now, len(subjects))
        context |= {"staff": len(_staff_ids(session, incident_id)), "erased": impact.erased_subjects}
        for address in recipients:
            queue_mail(
                session,
                to=address,
                subject=f"[{context['institution']}] personal-data breach notice: {incident.title}",
                template="breach_notice.txt",
                context=context,
                category=MailCategory.SECURITY,
            )
        impact.institution_told_at = now
        impact.authority_due_at = now + AUTHORITY_WITHIN
        impact.patron_notice = _patron_notice(context)
        session.add(
            IncidentNotice(
                tenant_id=session.tenant_id,
                incident_id=incident_id,
                audience=NoticeAudience.INSTITUTION.value,
                decision=NoticeDecision.SENT.value,
                recipients=len(recipients),
                decided_by=actor.person or actor.id,
                sent_at=now,
            )
        )
        for patron_id in subjects:
            session.execute(
                insert(IncidentNotice)
                .values(
                    tenant_id=session.tenant_id,
                    incident_id=incident_id,
                    audience=NoticeAudience.PATRON.value,
                    patron_id=patron_id,
                    decision=NoticeDecision.PREPARED.value,
                    recipients=0,
                    decided_by=actor.person or actor.id,
                )
                .on_conflict_do_nothing()
            )
        session.flush()
        details = {"audience": "institution", "recipients": len(recipients), "patron_notices_prepared": len(subjects)}
        audit.record(session, Action.BREACH_NOTIFIED, (service.TARGET, incident_id), actor=actor, details=details)
    with platform_session(db) as session:
        incident = service.get(session, incident_id, lock=True)
        service.act(
            session,
            incident,
            actor,
            Action.BREACH_NOTIFIED,
            "institution_notified",
            None,
            institution=institution,
            recipients=len(recipients),
        )
    return len(recipients)


def decline_institution(db: Database, actor: Principal, incident_id: UUID, institution: UUID, reason: str) -> None:
    """Decide not to notify the institution (Art. 33(1): unlikely to result in a risk), with the reason."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    with platform_session(db) as session:
        _breach(session, incident_id, institution)
    reason = _checked_reason(reason)
    with tenant_session(db, institution) as session:
        _impact(session, incident_id)
        _refuse_decided(session, incident_id)
        notice_id = uuid4()
        session.add(
            IncidentNotice(
                tenant_id=session.tenant_id,
                id=notice_id,
                incident_id=incident_id,
                audience=NoticeAudience.INSTITUTION.value,
                decision=NoticeDecision.NOT_NOTIFIED.value,
                reason=_seal(session, notice_id, reason),
                recipients=0,
                decided_by=actor.person or actor.id,
            )
        )
        audit.record(
            session,
            Action.BREACH_NOT_NOTIFIED,
            (service.TARGET, incident_id),
            actor=actor,
            details={"audience": "institution"},
        )
    with platform_session(db) as session:
        incident = service.get(session, incident_id, lock=True)
        service.act(
            session,
            incident,
            actor,
            Action.BREACH_NOT_NOTIFIED,
            "institution_not_notified",
            reason,
            institution=institution,
        )


def escalate_overdue_notices(db: Database) -> list[tuple[UUID, UUID]]:
    """Institutions still neither told nor decided on at their processor deadline: each escalated once (a line of
    the incident's timeline, the CISO mailed), claimed by one UPDATE. The (incident, institution) pairs."""
    with platform_session(db) as session:
        breaches = session.execute(
            select(Incident.id, Incident.institutions).where(
                Incident.breach_marked_at.is_not(None), Incident.state != IncidentState.CLOSED.value
            )
        ).all()
    overdue = []
    for incident_id, institutions in breaches:
        for institution in institutions or []:
            with tenant_session(db, institution) as session:
                claimed = session.execute(
                    update(IncidentImpact)
                    .where(
                        IncidentImpact.tenant_id == institution,
                        IncidentImpact.incident_id == incident_id,
                        IncidentImpact.processor_due_at < func.clock_timestamp(),
                        IncidentImpact.institution_told_at.is_(None),
                        IncidentImpact.overdue_escalated_at.is_(None),
                        ~select(IncidentNotice.id)
                        .where(
                            IncidentNotice.tenant_id == institution,
                            IncidentNotice.incident_id == incident_id,
                            IncidentNotice.audience == NoticeAudience.INSTITUTION.value,
                        )
                        .exists(),
                    )
                    .values(overdue_escalated_at=func.clock_timestamp())
                    .returning(IncidentImpact.incident_id)
                ).first()
            if claimed is not None:
                overdue.append((incident_id, institution))
    for incident_id, institution in overdue:
        with platform_session(db) as session:
            incident = service.get(session, incident_id, lock=True)
            service.act(
                session, incident, SYSTEM, Action.INCIDENT_ESCALATED, "notice_overdue", None, institution=institution
            )
            enqueue(session, service.MAIL_JOB, {"incident_id": str(incident_id), "kind": "notice_overdue"})
    return overdue


def remind_unacknowledged(db: Database) -> list[tuple[UUID, UUID, int]]:
    """Institutions told of a breach that have not acknowledged the notice: reminded every REMIND_EVERY after
    being told, at most REMINDERS times, each reminder once (claimed by one UPDATE from the one before it). An
    institution that acknowledged is reminded no more; the others still are. The (incident, institution,
    reminder) triples sent now."""
    with platform_session(db) as session:
        breaches = session.execute(
            select(Incident.id, Incident.title, Incident.institutions).where(
                Incident.breach_marked_at.is_not(None), Incident.state != IncidentState.CLOSED.value
            )
        ).all()
    sent = []
    for incident_id, title, institutions in breaches:
        for institution in institutions or []:
            with tenant_session(db, institution) as session:
                step = _remind(session, incident_id, title)
            if step is None:
                continue
            with platform_session(db) as session:
                incident = service.get(session, incident_id, lock=True)
                service.act(
                    session,
                    incident,
                    SYSTEM,
                    Action.BREACH_REMINDED,
                    "acknowledgement_chased",
                    None,
                    institution=institution,
                    reminder=step,
                )
            sent.append((incident_id, institution, step))
    return sent


def _remind(session: TenantSession, incident_id: UUID, title: str) -> int | None:
    impact = session.get(IncidentImpact, (session.tenant_id, incident_id))
    if impact is None or impact.institution_told_at is None or impact.acknowledged_at is not None:
        return None
    now = session.scalar(select(func.clock_timestamp()))
    step = impact.reminders + 1
    if step > min(REMINDERS, int((now - impact.institution_told_at) / REMIND_EVERY)):
        return None
    claimed = session.execute(
        update(IncidentImpact)
        .where(
            IncidentImpact.tenant_id == session.tenant_id,
            IncidentImpact.incident_id == incident_id,
            IncidentImpact.reminders == step - 1,
            IncidentImpact.acknowledged_at.is_(None),
        )
        .values(reminders=step)
        .returning(IncidentImpact.incident_id)
        .execution_options(synchronize_session=False)
    ).first()
    if claimed is None:
        return None
    recipients = breach_recipients(session)
    institution = institution_name(session)
    context = {
        "institution": institution,
        "incident_id": str(incident_id),
        "title": title,
        "told": mail_time(impact.institution_told_at),
        "authority_due": mail_time(impact.authority_due_at),
        "reminder": step,
    }
    for address in recipients:
        queue_mail(
            session,
            to=address,
            subject=f"[{institution}] reminder: acknowledge the personal-data breach notice: {title}",
            template="breach_reminder.txt",
            context=context,
            category=MailCategory.SECURITY,
        )
    audit.record(
        session,
        Action.BREACH_REMINDED,
        (service.TARGET, incident_id),
        actor=SYSTEM,
        details={"reminder": step, "recipients": len(recipients)},
    )
    return step


def breach_recipients(session: TenantSession) -> list[str]:
    """The institution's security contacts and every active account holding incidents.read, each address once."""
    found = [*security_contacts(session), *(a for _, a in holders_to_mail(session, Permission.INCIDENTS_READ))]
    return list(dict.fromkeys(a.strip().lower() for a in found))


def _breach(session, incident_id: UUID, institution: UUID) -> Incident:
    incident = service.get(session, incident_id)
    if incident.breach_marked_at is None:
        raise Conflict(f"incident {incident_id} is not marked a personal-data breach: mark it first (breach)")
    if institution not in (incident.institutions or []):
        raise NotFound(f"incident {incident_id} does not affect institution {institution}")
    return incident


def _refuse_decided(session: TenantSession, incident_id: UUID) -> None:
    decided = session.scalars(
        select(IncidentNotice).where(
            IncidentNotice.tenant_id == session.tenant_id,
            IncidentNotice.incident_id == incident_id,
            IncidentNotice.audience == NoticeAudience.INSTITUTION.value,
        )
    ).first()
    if decided is not None:
        raise Conflict(
            f"the institution's notice of incident {incident_id} was already decided ({decided.decision} at "
            f"{decided.decided_at.isoformat()}): a notice is never sent twice"
        )


def _notice_context(
    session: TenantSession, incident: Incident, impact: IncidentImpact, now: datetime, subjects: int
) -> dict[str, Any]:
    return {
        "institution": institution_name(session),
        "incident_id": str(incident.id),
        "title": incident.title,
        "what_happened": incident.summary,
        "window": f"{mail_time(incident.breach_window_start)} to {mail_time(incident.breach_window_end)}",
        "data": "; ".join(POLICIES[Category(c)].description for c in incident.breach_data or []),
        "subjects": subjects,
        "measures": incident.breach_measures,
        "contact": incident.breach_contact,
        "aware": mail_time(impact.aware_at or now),
        "told": mail_time(now),
        "authority_due": mail_time(now + AUTHORITY_WITHIN),
    }


def _patron_notice(context: dict[str, Any]) -> str:
    """The notice prepared for each affected patron (Art. 34(2)): plain words, no other person named."""
    return (
        f"{context['institution']} is writing to tell you about a security incident that involved your personal "
        f"data.\n\nWhat happened: {context['what_happened']}\nWhen: {context['window']}\n"
        f"Which data: {context['data']}\n\nWhat has been done: {context['measures']}\n\n"
        "What you can do: watch for messages that claim to come from the library, change your password if you "
        "use it elsewhere, and tell us if you notice anything unusual in your account.\n\n"
        f"Whom to contact: {context['institution']}'s privacy officer, or {context['contact']} "
        f"(reference {context['incident_id']})."
    )


# -- the institution's side ------------------------------------------------------------------


class IncidentNoticeOut(BaseModel):
    audience: NoticeAudience
    patron_id: UUID | None
    decision: NoticeDecision
    reason: str | None
    recipients: int
    decided_at: datetime
    sent_at: datetime | None


class ImpactOut(BaseModel):
    subjects: list[UUID]  # patrons
    staff: list[UUID]  # staff accounts
    erased_subjects: int  # people reached whose records were erased before the breach was found
    aware_at: datetime | None
    processor_due_at: datetime | None
    institution_told_at: datetime | None
    authority_due_at: datetime | None
    acknowledged_at: datetime | None
    notices: list[IncidentNoticeOut]


class InstitutionIncident(BaseModel):
    id: UUID
    title: str
    summary: str
    severity: str
    category: str
    state: str
    opened_at: datetime
    contained_at: datetime | None
    recovered_at: datetime | None
    closed_at: datetime | None
    personal_data_breach: bool
    breach_data: list[str] | None
    breach_measures: str | None
    breach_contact: str | None
    impact: ImpactOut | None = None


def institution_incidents(db: Database, actor: Principal) -> list[InstitutionIncident]:
    """The incidents that affect the actor's institution, newest first (no other institution's)."""
    authorize(actor, Permission.INCIDENTS_READ)
    tenant_id = _tenant_of(actor)
    with platform_session(db) as session:
        rows = session.scalars(
            select(Incident)
            .where(Incident.institutions.any(tenant_id))
            .order_by(Incident.opened_at.desc())
            .limit(service.LIST_LIMIT)
        ).all()
        found = [_for_institution(row) for row in rows]
    with tenant_session(db, tenant_id) as session:
        audit.record(
            session, Action.INCIDENT_LISTED, (service.TARGET, None), actor=actor, details={"count": len(found)}
        )
    return found


def institution_incident(db: Database, actor: Principal, incident_id: UUID) -> InstitutionIncident:
    """One incident that affects the actor's institution, with its subjects, clock and notices; another
    institution's incident is not found."""
    authorize(actor, Permission.INCIDENTS_READ)
    tenant_id = _tenant_of(actor)
    with platform_session(db) as session:
        incident = session.scalars(
            select(Incident).where(Incident.id == incident_id, Incident.institutions.any(tenant_id))
        ).first()
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        found = _for_institution(incident)
    with tenant_session(db, tenant_id) as session:
        found.impact = _impact_out(session, incident_id)
        audit.record(session, Action.INCIDENT_VIEWED, (service.TARGET, incident_id), actor=actor)
    return found


def _tenant_of(actor: Principal) -> UUID:
    if actor.tenant_id is None:
        raise NotFound("operators read incidents at /api/v1/operator/incidents")
    return actor.tenant_id


def _for_institution(incident: Incident) -> InstitutionIncident:
    # What the institution is told of the incident: no other institution's ids, not the handlers' targets.
    return InstitutionIncident(
        id=incident.id,
        title=incident.title,
        summary=incident.summary,
        severity=incident.severity,
        category=incident.category,
        state=incident.state,
        opened_at=incident.opened_at,
        contained_at=incident.contained_at,
        recovered_at=incident.recovered_at,
        closed_at=incident.closed_at,
        personal_data_breach=incident.breach_marked_at is not None,
        breach_data=incident.breach_data,
        breach_measures=incident.breach_measures,
        breach_contact=incident.breach_contact,
    )


def _impact_out(session: TenantSession, incident_id: UUID) -> ImpactOut | None:
    impact = session.get(IncidentImpact, (session.tenant_id, incident_id))
    if impact is None:
        return None
    notices = session.scalars(
        select(IncidentNotice)
        .where(IncidentNotice.tenant_id == session.tenant_id, IncidentNotice.incident_id == incident_id)
        .order_by(IncidentNotice.audience, IncidentNotice.patron_id)
    ).all()
    return ImpactOut(
        subjects=_subject_ids(session, incident_id),
        staff=_staff_ids(session, incident_id),
        erased_subjects=impact.erased_subjects,
        aware_at=impact.aware_at,
        processor_due_at=impact.processor_due_at,
        institution_told_at=impact.institution_told_at,
        authority_due_at=impact.authority_due_at,
        acknowledged_at=impact.acknowledged_at,
        notices=[
            IncidentNoticeOut(
                audience=n.audience,
                patron_id=n.patron_id,
                decision=n.decision,
                reason=_unseal(session, n) if n.reason is not None else None,
                recipients=n.recipients,
                decided_at=n.decided_at,
                sent_at=n.sent_at,
            )
            for n in notices
        ],
    )


class Acknowledgement(BaseModel):
    incident_id: UUID
    acknowledged_at: datetime
    already: bool  # acknowledged before: nothing changed


def acknowledge(db: Database, actor: Principal, incident_id: UUID) -> Acknowledgement:
    """The institution (the controller) acknowledges receipt of the breach notice: recorded in its chain and on
    the incident's timeline, and the escalation job reminds it no more. Acknowledging again changes nothing and
    says when it was; another institution's incident is not found; with no notice sent there is nothing to
    acknowledge."""
    authorize(actor, Permission.INCIDENTS_NOTIFY)
    tenant_id = _tenant_of(actor)
    with platform_session(db) as session:
        found = session.scalar(
            select(Incident.id).where(Incident.id == incident_id, Incident.institutions.any(tenant_id))
        )
    if found is None:
        raise NotFound(f"no incident {incident_id}")
    with tenant_session(db, tenant_id) as session:
        impact = session.scalars(
            select(IncidentImpact)
            .where(IncidentImpact.tenant_id == tenant_id, IncidentImpact.incident_id == incident_id)
            .with_for_update()
        ).first()
        if impact is None or impact.institution_told_at is None:
            raise Conflict(
                f"incident {incident_id}: no breach notice was sent to this institution: nothing to acknowledge"
            )
        if impact.acknowledged_at is not None:
            return Acknowledgement(incident_id=incident_id, acknowledged_at=impact.acknowledged_at, already=True)
        impact.acknowledged_at = session.scalar(select(func.clock_timestamp()))
        impact.acknowledged_by = actor.person or actor.id
        told = impact.institution_told_at
        audit.record(
            session,
            Action.BREACH_ACKNOWLEDGED,
            (service.TARGET, incident_id),
            actor=actor,
            details={"told_at": told.isoformat(), "reminders": impact.reminders},
        )
        acknowledged = Acknowledgement(incident_id=incident_id, acknowledged_at=impact.acknowledged_at, already=False)
    # The platform's timeline names the institution, not the person nor where they acted from: that is in the
    # institution's own chain (above).
    with audit.acting(audit.Context(principal=SYSTEM)), platform_session(db) as session:
        incident = service.get(session, incident_id, lock=True)
        service.act(
            session,
            incident,
            SYSTEM,
            Action.BREACH_ACKNOWLEDGED,
            "institution_acknowledged",
            None,
            institution=tenant_id,
            after_minutes=int((acknowledged.acknowledged_at - told).total_seconds() // 60),
        )
    return acknowledged


class PatronNotices(BaseModel):
    incident_id: UUID
    notice: str | None  # the text prepared for each patron (the same for all)
    prepared: list[UUID]  # patrons whose notice waits for the institution
    sent: list[UUID]
    not_notified: list[UUID]


def patron_notices(session: TenantSession, actor: Principal, incident_id: UUID) -> PatronNotices:
    """The notice prepared for the institution's affected patrons, and who has been told or not."""
    authorize(actor, Permission.INCIDENTS_NOTIFY)
    impact = _impact(session, incident_id)
    rows = session.execute(
        select(IncidentNotice.patron_id, IncidentNotice.decision)
        .where(
            IncidentNotice.tenant_id == session.tenant_id,
            IncidentNotice.incident_id == incident_id,
            IncidentNotice.audience == NoticeAudience.PATRON.value,
        )
        .order_by(IncidentNotice.patron_id)
    ).all()
    audit.record(
        session,
        Action.INCIDENT_VIEWED,
        (service.TARGET, incident_id),
        actor=actor,
        details={"patron_notices": len(rows)},
    )
    return PatronNotices(
        incident_id=incident_id,
        notice=impact.patron_notice,
        prepared=[p for p, d in rows if d == NoticeDecision.PREPARED.value],
        sent=[p for p, d in rows if d == NoticeDecision.SENT.value],
        not_notified=[p for p, d in rows if d == NoticeDecision.NOT_NOTIFIED.value],
    )


def prepared_patrons(session: TenantSession, incident_id: UUID) -> list[UUID]:
    return list(
        session.scalars(
            select(IncidentNotice.patron_id)
            .where(
                IncidentNotice.tenant_id == session.tenant_id,
                IncidentNotice.incident_id == incident_id,
                IncidentNotice.audience == NoticeAudience.PATRON.value,
                IncidentNotice.decision == NoticeDecision.PREPARED.value,
            )
            .order_by(IncidentNotice.patron_id)
        )
    )


def send_patron_notices(session: TenantSession, approver: Principal, incident_id: UUID, approval_id: UUID) -> int:
    """Send the prepared notices, on the institution's approved instruction (incidents/approvals.py): each
    prepared notice moves to sent once (a second run finds none prepared). A patron with no address on file
    stays prepared, for the institution to reach another way. The number sent."""
    impact = _impact(session, incident_id)
    sent = 0
    institution = institution_name(session)
    for patron_id in prepared_patrons(session, incident_id):
        patron = session.get(Patron, (session.tenant_id, patron_id))
        address = email_on_file(session, patron) if patron is not None else None
        if address is None:
            continue
        moved = session.execute(
            update(IncidentNotice)
            .where(
                IncidentNotice.tenant_id == session.tenant_id,
                IncidentNotice.incident_id == incident_id,
                IncidentNotice.patron_id == patron_id,
                IncidentNotice.decision == NoticeDecision.PREPARED.value,
            )
            .values(
                decision=NoticeDecision.SENT.value,
                sent_at=func.clock_timestamp(),
                recipients=1,
                approval_id=approval_id,
                decided_by=approver.person or approver.id,
            )
            .returning(IncidentNotice.id)
        ).first()
        if moved is None:
            continue
        queue_mail(
            session,
            to=address,
            subject=f"[{institution}] a security incident involving your personal data",
            template="breach_patron_notice.txt",
            context={"message": impact.patron_notice, "institution": institution},
            category=MailCategory.SECURITY,
        )
        sent += 1
    audit.record(
        session,
        Action.BREACH_NOTIFIED,
        (service.TARGET, incident_id),
        actor=approver,
        details={"audience": "patron", "sent": sent, "approval_id": approval_id},
    )
    return sent


def decline_patrons(
    session: TenantSession, actor: Principal, incident_id: UUID, reason: str, patron_ids: Iterable[UUID] | None = None
) -> int:
    """The institution decides not to notify its patrons (all prepared, or those named), with the reason
    (Art. 34(3): the data was unintelligible, the risk was removed, or a public notice replaces them)."""
    authorize(actor, Permission.INCIDENTS_NOTIFY)
    _impact(session, incident_id)
    reason = _checked_reason(reason)
    prepared = prepared_patrons(session, incident_id)
    chosen = prepared if patron_ids is None else sorted(set(patron_ids))
    if missing := sorted(set(chosen) - set(prepared)):
        raise Conflict(f"no prepared notice for patron {', '.join(map(str, missing))}: sent or decided already")
    for patron_id in chosen:
        notice = session.scalars(
            select(IncidentNotice)
            .where(
                IncidentNotice.tenant_id == session.tenant_id,
                IncidentNotice.incident_id == incident_id,
                IncidentNotice.patron_id == patron_id,
            )
            .with_for_update()
        ).one()
        notice.decision = NoticeDecision.NOT_NOTIFIED.value
        notice.reason = _seal(session, notice.id, reason)
        notice.decided_by = actor.person or actor.id
    audit.record(
        session,
        Action.BREACH_NOT_NOTIFIED,
        (service.TARGET, incident_id),
        actor=actor,
        details={"audience": "patron", "count": len(chosen)},
    )
    return len(chosen)


def _checked_reason(reason: str) -> str:
    service._check_text(reason=reason)
    if not reason or not reason.strip():
        raise InvalidInput("reason: why no notice is sent is recorded with the decision")
    return reason.strip()


def _seal(session: TenantSession, notice_id: UUID, value: str) -> bytes:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return encrypt_field(key, session.tenant_id, NOTICES_TABLE, "reason", notice_id, value)


def _unseal(session: TenantSession, notice: IncidentNotice) -> str:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return decrypt_field(key, session.tenant_id, NOTICES_TABLE, "reason", notice.id, notice.reason)
