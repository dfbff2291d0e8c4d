"""Incidents: opened, assigned, triaged, contained, eradicated, recovered and closed with a review (NIST SP 800-61).

Everything here works in a platform transaction (the caller's `session`, no tenant context): the incident and
its timeline are the platform's. What an incident means for one institution (its subjects, its breach clock,
its notices) is written in that institution's own rows by incidents/affected.py.

Every action is a line of the incident's timeline and an audit event of the platform's chain, in the same
transaction. Opening one queues the CISO's mail at once (incidents/jobs.py sends it, retried by the queue);
an incident left untriaged past its severity's time is escalated by a job, one step at a time, each step once.

Ways in: a handler (`open_incident`, over HTTP and at the console), a monitoring alert (`open_from_alert`),
and the platform's own findings, opened as the platform (SYSTEM) through the registries of the lower areas
(incidents/hooks.py): a failed restore drill, an audit chain that fails verification, a storm of account
lockouts (incidents/jobs.py), a report of suspected unauthorised access (privacy/concerns). An automatic source
opens one incident while it is open: seen again, it adds a line to that incident's timeline instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.core.sensitive import check_fields
from bookwarden.core.text import LINE, LINES
from bookwarden.identity.operators.models import OperatorAccount, OperatorStatus
from bookwarden.incidents.models import (
    Incident,
    IncidentCategory,
    IncidentEntry,
    IncidentSource,
    IncidentState,
    Severity,
)
from bookwarden.jobs.service import enqueue

TARGET = "incident"
MAIL_JOB = "incidents.mail"
MAX_TITLE = 200
MAX_TEXT = 10_000
LIST_LIMIT = 500

# How long an incident may wait for triage before it escalates; step n is due n times this after opening,
# up to ESCALATION_STEPS steps (each mails the CISO and the operators and adds a timeline line, once).
TRIAGE_WITHIN: dict[Severity, timedelta] = {
    Severity.CRITICAL: timedelta(minutes=15),
    Severity.HIGH: timedelta(hours=1),
    Severity.MEDIUM: timedelta(hours=4),
    Severity.LOW: timedelta(hours=24),
}
ESCALATION_STEPS = 3

# The life cycle, in order; each step is taken from the one before it (a false positive closes from triage).
ORDER = (
    IncidentState.OPEN,
    IncidentState.TRIAGED,
    IncidentState.CONTAINED,
    IncidentState.ERADICATED,
    IncidentState.RECOVERED,
    IncidentState.CLOSED,
)
STEPS = {
    IncidentState.CONTAINED: "contained_at",
    IncidentState.ERADICATED: "eradicated_at",
    IncidentState.RECOVERED: "recovered_at",
}
# The post-incident review (NIST SP 800-61 "lessons learned"): every field is required to close.
REVIEW_FIELDS = ("root_cause", "actions_taken", "lessons_learned", "follow_up")


# -- what callers see ------------------------------------------------------------------------


class EntryOut(BaseModel):
    seq: int
    recorded_at: datetime
    kind: str
    actor_kind: str
    actor_id: UUID | None
    note: str | None
    details: dict[str, Any]


class IncidentSummary(BaseModel):
    id: UUID
    title: str
    severity: Severity
    category: IncidentCategory
    state: IncidentState
    source: IncidentSource
    opened_at: datetime
    assignee_id: UUID | None
    personal_data_breach: bool


class IncidentDetail(IncidentSummary):
    summary: str
    source_ref: str | None
    institutions: list[UUID]
    triaged_at: datetime | None
    contained_at: datetime | None
    eradicated_at: datetime | None
    recovered_at: datetime | None
    closed_at: datetime | None
    escalation_step: int
    review: dict[str, str] | None
    breach_marked_at: datetime | None
    breach_window_start: datetime | None
    breach_window_end: datetime | None
    breach_data: list[str] | None
    timeline: list[EntryOut]


def summary_of(incident: Incident) -> IncidentSummary:
    return IncidentSummary(
        id=incident.id,
        title=incident.title,
        severity=Severity(incident.severity),
        category=IncidentCategory(incident.category),
        state=IncidentState(incident.state),
        source=IncidentSource(incident.source),
        opened_at=incident.opened_at,
        assignee_id=incident.assignee_id,
        personal_data_breach=incident.breach_marked_at is not None,
    )


def detail_of(session: Session, incident: Incident, *, timeline: bool = True) -> IncidentDetail:
    entries = timeline_of(session, incident.id) if timeline else []
    return IncidentDetail(
        **summary_of(incident).model_dump(),
        summary=incident.summary,
        source_ref=incident.source_ref,
        institutions=list(incident.institutions or []),
        triaged_at=incident.triaged_at,
        contained_at=incident.contained_at,
        eradicated_at=incident.eradicated_at,
        recovered_at=incident.recovered_at,
        closed_at=incident.closed_at,
        escalation_step=incident.escalation_step,
        review=incident.review,
        breach_marked_at=incident.breach_marked_at,
        breach_window_start=incident.breach_window_start,
        breach_window_end=incident.breach_window_end,
        breach_data=incident.breach_data,
        timeline=entries,
    )


def timeline_of(session: Session, incident_id: UUID) -> list[EntryOut]:
    rows = session.scalars(
        select(IncidentEntry).where(IncidentEntry.incident_id == incident_id).order_by(IncidentEntry.seq)
    )
    return [EntryOut.model_validate(row, from_attributes=True) for row in rows]


# -- opening ---------------------------------------------------------------------------------


def open_incident(
    session: Session,
    actor: Principal,
    *,
    title: str,
    summary: str,
    severity: Severity = Severity.MEDIUM,
    category: IncidentCategory = IncidentCategory.OTHER,
) -> Incident:
    """A handler opens an incident by hand."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    return _open(session, actor, IncidentSource.MANUAL, title, summary, severity, category)


def open_from_alert(
    session: Session,
    actor: Principal,
    alert_ref: str,
    summary: str,
    *,
    title: str | None = None,
    severity: Severity = Severity.HIGH,
    category: IncidentCategory = IncidentCategory.OTHER,
) -> Incident:
    """Promote a monitoring alert to an incident: a handler (over HTTP, at the console), or the platform itself
    (SYSTEM) from the alerts' registry. The same alert promoted twice while its incident is open gives that one."""
    if actor is not SYSTEM:
        authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    if not isinstance(alert_ref, str) or not re.fullmatch(r"[A-Za-z0-9._:-]{1,200}", alert_ref):
        raise InvalidInput("alert: the alert's id or reference (letters, digits, . _ : -; at most 200)")
    return _open(
        session,
        actor,
        IncidentSource.ALERT,
        title or f"Alert {alert_ref}",
        summary,
        severity,
        category,
        source_ref=alert_ref,
        source_key=alert_ref,
    )


def open_automatic(
    session: Session,
    source: IncidentSource,
    *,
    title: str,
    summary: str,
    severity: Severity,
    category: IncidentCategory,
    source_ref: str | None,
    source_key: str,
    institutions: Iterable[UUID] = (),
    incident_id: UUID | None = None,
) -> Incident:
    """The platform's own finding opens an incident (SYSTEM); while one from the same source and key is open,
    the finding is a new line of its timeline instead."""
    return _open(
        session,
        SYSTEM,
        source,
        title,
        summary,
        severity,
        category,
        source_ref=source_ref,
        source_key=source_key,
        institutions=institutions,
        incident_id=incident_id,
    )


def _open(
    session: Session,
    actor: Principal,
    source: IncidentSource,
    title: str,
    summary: str,
    severity: Severity | str,
    category: IncidentCategory | str,
    *,
    source_ref: str | None = None,
    source_key: str | None = None,
    institutions: Iterable[UUID] = (),
    incident_id: UUID | None = None,
) -> Incident:
    severity, category = _severity(severity), _category(category)
    _check_text(title=title, summary=summary)
    if source_key is not None:
        already = session.scalars(
            select(Incident)
            .where(Incident.source == source.value, Incident.source_key == source_key)
            .where(Incident.state != IncidentState.CLOSED.value)
            .order_by(Incident.opened_at)
            .with_for_update()
        ).first()
        if already is not None:
            # Seen again: the institutions it now reaches are added (each then sees the incident).
            added = sorted(set(institutions) - set(already.institutions or []))
            if added:
                already.institutions = sorted({*(already.institutions or []), *added})
            _act(
                session,
                already,
                actor,
                Action.INCIDENT_NOTED,
                "seen_again",
                summary,
                source_ref=source_ref,
                institutions=[str(i) for i in added] or None,
            )
            return already
    incident = Incident(
        id=incident_id or uuid4(),
        title=title.strip(),
        summary=summary.strip(),
        severity=severity.value,
        category=category.value,
        state=IncidentState.OPEN.value,
        source=source.value,
        source_ref=source_ref,
        source_key=source_key,
        opened_by=actor.person or actor.id,
        institutions=sorted(set(institutions)),
        escalation_step=0,
    )
    session.add(incident)
    session.flush()
    session.refresh(incident, ["opened_at"])
    _act(
        session,
        incident,
        actor,
        Action.INCIDENT_OPENED,
        "opened",
        None,
        source=source.value,
        severity=severity.value,
        category=category.value,
        source_ref=source_ref,
        institutions=[str(i) for i in incident.institutions],
    )
    # The CISO is told of every incident at once: the mail is queued in this transaction (incidents/jobs.py).
    enqueue(session, MAIL_JOB, {"incident_id": str(incident.id), "kind": "opened"})
    return incident


# -- reading ---------------------------------------------------------------------------------


def list_incidents(session: Session, actor: Principal, *, open_only: bool = False) -> list[IncidentSummary]:
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    query = select(Incident).order_by(Incident.opened_at.desc(), Incident.id).limit(LIST_LIMIT)
    if open_only:
        query = query.where(Incident.state != IncidentState.CLOSED.value)
    found = [summary_of(row) for row in session.scalars(query)]
    audit.record(session, Action.INCIDENT_LISTED, (TARGET, None), actor=actor, details={"count": len(found)})
    return found


def read(session: Session, actor: Principal, incident_id: UUID) -> IncidentDetail:
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    incident = get(session, incident_id)
    audit.record(session, Action.INCIDENT_VIEWED, (TARGET, incident.id), actor=actor)
    return detail_of(session, incident)


def get(session: Session, incident_id: UUID, *, lock: bool = False) -> Incident:
    query = select(Incident).where(Incident.id == incident_id)
    incident = session.scalars(query.with_for_update() if lock else query).first()
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    return incident


# -- the life cycle --------------------------------------------------------------------------


def assign(session: Session, actor: Principal, incident_id: UUID, handler_id: UUID) -> Incident:
    """Assign to an incident handler: an active operator account whose role holds platform.incidents.handle."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    incident = _open_for_work(session, incident_id)
    handler = session.get(OperatorAccount, handler_id)
    if handler is None:
        raise NotFound(f"handler: no operator account {handler_id}")
    if handler.status != OperatorStatus.ACTIVE.value or not is_handler_role(handler.role):
        raise InvalidInput(
            f"handler: {handler_id} is no active operator account whose role handles incidents "
            f"({', '.join(sorted(handler_roles()))})"
        )
    incident.assignee_id = handler.id
    _act(session, incident, actor, Action.INCIDENT_ASSIGNED, "assigned", None, assignee_id=handler.id)
    return incident


def handlers(session: Session) -> list[tuple[UUID, str]]:
    """(id, username) of the active operator accounts an incident may be assigned to (the page's choices)."""
    rows = session.execute(
        select(OperatorAccount.id, OperatorAccount.username)
        .where(OperatorAccount.status == OperatorStatus.ACTIVE.value, OperatorAccount.role.in_(handler_roles()))
        .order_by(OperatorAccount.username)
    )
    return [(row.id, row.username) for row in rows]


def handler_id(session: Session, ref: str) -> UUID:
    """An operator account named by id or username (the console's --handler)."""
    try:
        return UUID(ref)
    except ValueError:
        found = session.scalars(select(OperatorAccount.id).where(OperatorAccount.username == ref)).first()
        if found is None:
            raise InvalidInput(f"handler: no operator account {ref!r}") from None
        return found


def handler_roles() -> set[str]:
    """The platform roles whose holders handle incidents: decided by the permission, never by a role's name."""
    return {role.value for role, held in BUILTIN_PERMISSIONS.items() if Permission.PLATFORM_INCIDENTS_HANDLE in held}


def is_handler_role(role: str) -> bool:
    return role in handler_roles()


def triage(
    session: Session,
    actor: Principal,
    incident_id: UUID,
    *,
    severity: Severity,
    category: IncidentCategory,
    institutions: Iterable[UUID] = (),
    subjects: int = 0,
    note: str | None = None,
) -> tuple[Incident, list[UUID]]:
    """Severity, category and the institutions affected; the incident leaves `open` (its escalation stops).
    May be repeated while the incident is open for work (what is known grows). Returns the incident and the
    institutions newly named (incidents/affected.py writes what it means for each)."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    severity, category = _severity(severity), _category(category)
    _check_text(note=note)
    incident = _open_for_work(session, incident_id)
    before = set(incident.institutions or [])
    added = sorted(set(institutions) - before)
    incident.severity, incident.category = severity.value, category.value
    incident.institutions = sorted(before | set(added))
    if incident.state == IncidentState.OPEN.value:
        incident.state = IncidentState.TRIAGED.value
        incident.triaged_at = func.now()
    _act(
        session,
        incident,
        actor,
        Action.INCIDENT_TRIAGED,
        "triaged",
        note,
        severity=severity.value,
        category=category.value,
        institutions=[str(i) for i in incident.institutions],
        subjects=subjects,
    )
    return incident, added


def advance(session: Session, actor: Principal, incident_id: UUID, step: IncidentState, note: str) -> Incident:
    """Containment, eradication or recovery, in that order, each with what was done."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    step = IncidentState(step)
    if step not in STEPS:
        raise InvalidInput(f"step: one of {', '.join(s.value for s in STEPS)}")
    incident = _open_for_work(session, incident_id)
    _check_text(note=note)
    if not note or not note.strip():
        raise InvalidInput("note: say what was done")
    expected = ORDER[ORDER.index(step) - 1]
    if incident.state != expected.value:
        raise Conflict(
            f"incident {incident.id} is {incident.state}: it must be {expected.value} to become {step.value}"
        )
    incident.state = step.value
    setattr(incident, STEPS[step], func.now())
    _act(session, incident, actor, Action.INCIDENT_ADVANCED, step.value, note, state=step.value)
    return incident


def close(session: Session, actor: Principal, incident_id: UUID, review: dict[str, str]) -> Incident:
    """Close with the post-incident review (every field of REVIEW_FIELDS). From recovery; a false positive
    closes from triage."""
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    incident = _open_for_work(session, incident_id)
    missing = [f for f in REVIEW_FIELDS if not isinstance(review.get(f), str) or not review[f].strip()]
    if missing:
        raise InvalidInput(f"review: {', '.join(missing)} required to close (the post-incident review)")
    unknown = sorted(set(review) - set(REVIEW_FIELDS))
    if unknown:
        raise InvalidInput(f"review: unknown fields {', '.join(unknown)}; give {', '.join(REVIEW_FIELDS)}")
    _check_text(**review)
    false_positive = incident.category == IncidentCategory.FALSE_POSITIVE.value
    allowed = {IncidentState.RECOVERED.value} | ({IncidentState.TRIAGED.value} if false_positive else set())
    if incident.state not in allowed:
        raise Conflict(
            f"incident {incident.id} is {incident.state}: it closes after recovery (a false positive, after triage)"
        )
    incident.review = {f: review[f].strip() for f in REVIEW_FIELDS}
    incident.state = IncidentState.CLOSED.value
    incident.closed_at = func.now()
    _act(session, incident, actor, Action.INCIDENT_CLOSED, "closed", None, state=IncidentState.CLOSED.value)
    return incident


def note(session: Session, actor: Principal, incident_id: UUID, text: str) -> Incident:
    authorize(actor, Permission.PLATFORM_INCIDENTS_HANDLE)
    _check_text(note=text)
    if not text or not text.strip():
        raise InvalidInput("note: say what happened or was done")
    incident = get(session, incident_id, lock=True)
    _act(session, incident, actor, Action.INCIDENT_NOTED, "note", text)
    return incident


# -- escalation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Escalation:
    incident_id: UUID
    step: int


def escalate_due(session: Session) -> list[Escalation]:
    """Take every escalation step now due (incidents still `open` past n times their severity's triage time):
    each step is claimed by one UPDATE from the step before it, so it happens exactly once whoever runs this."""
    taken = []
    candidates = session.scalars(
        select(Incident).where(Incident.state == IncidentState.OPEN.value, Incident.escalation_step < ESCALATION_STEPS)
    ).all()
    now = session.scalar(select(func.now()))
    for incident in candidates:
        within = TRIAGE_WITHIN[Severity(incident.severity)]
        due = min(ESCALATION_STEPS, int((now - incident.opened_at) / within))
        step = incident.escalation_step + 1
        if step > due:
            continue
        claimed = session.execute(
            update(Incident)
            .where(
                Incident.id == incident.id,
                Incident.escalation_step == step - 1,
                Incident.state == IncidentState.OPEN.value,
            )
            .values(escalation_step=step)
            .returning(Incident.id)
            .execution_options(synchronize_session=False)
        ).first()
        if claimed is None:
            continue
        session.refresh(incident)
        _act(
            session,
            incident,
            SYSTEM,
            Action.INCIDENT_ESCALATED,
            "escalated",
            None,
            step=step,
            severity=incident.severity,
            waited_minutes=int((now - incident.opened_at).total_seconds() // 60),
        )
        enqueue(session, MAIL_JOB, {"incident_id": str(incident.id), "kind": "escalated", "step": step})
        taken.append(Escalation(incident.id, step))
    return taken


def ciso_notified(session: Session, incident_id: UUID, kind: str, recipients: int, step: int | None = None) -> None:
    """The CISO's mail went out (incidents/jobs.py): a line of the timeline."""
    incident = get(session, incident_id, lock=True)
    _act(
        session,
        incident,
        SYSTEM,
        Action.INCIDENT_CISO_NOTIFIED,
        "ciso_notified",
        None,
        about=kind,
        step=step,
        recipients=recipients,
    )


# -- helpers ---------------------------------------------------------------------------------


def act(
    session: Session, incident: Incident, actor: Principal, action: Action, kind: str, text: str | None, **details: Any
) -> IncidentEntry:
    """A line of the timeline and its audit event (platform chain), in the caller's transaction."""
    return _act(session, incident, actor, action, kind, text, **details)


def _act(
    session: Session, incident: Incident, actor: Principal, action: Action, kind: str, text: str | None, **details: Any
) -> IncidentEntry:
    seq = session.scalar(
        select(func.coalesce(func.max(IncidentEntry.seq), 0)).where(IncidentEntry.incident_id == incident.id)
    )
    stored = {k: (str(v) if isinstance(v, UUID) else v) for k, v in details.items() if v is not None}
    entry = IncidentEntry(
        incident_id=incident.id,
        seq=seq + 1,
        kind=kind,
        actor_kind=actor.kind.value,
        actor_id=actor.id,
        note=text.strip() if text else None,
        details=stored,
    )
    session.add(entry)
    session.flush()
    # The note's words stay in the timeline: the event carries the step, states and counts.
    audit.record(session, action, (TARGET, incident.id), actor=actor, details={"entry": kind, **details})
    return entry


def _open_for_work(session: Session, incident_id: UUID) -> Incident:
    incident = get(session, incident_id, lock=True)
    if incident.state == IncidentState.CLOSED.value:
        raise Conflict(f"incident {incident.id} is closed; open a new one for what happened since")
    return incident


def _severity(value: Severity | str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise InvalidInput(f"severity: one of {', '.join(s.value for s in Severity)}") from None


def _category(value: IncidentCategory | str) -> IncidentCategory:
    try:
        return IncidentCategory(value)
    except ValueError:
        raise InvalidInput(f"category: one of {', '.join(c.value for c in IncidentCategory)}") from None


def _check_text(**fields: str | None) -> None:
    """Titles are one line; other texts lines; none holds payment data (screened as every API body is)."""
    for name, value in fields.items():
        if value is None:
            continue
        single = name == "title"
        limit = MAX_TITLE if single else MAX_TEXT
        if not isinstance(value, str) or len(value) > limit or re.fullmatch(LINE if single else LINES, value) is None:
            raise InvalidInput(f"{name}: {'one line' if single else 'text'} of at most {limit:,} characters")
    check_fields({k: v for k, v in fields.items() if v is not None})
