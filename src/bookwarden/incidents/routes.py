"""Incidents over HTTP: the handlers' API (platform.incidents.handle) and the institution's (incidents.read,
incidents.notify): an institution sees only the incidents that affect it, and another's is not found."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.classification import Category
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database, platform_session
from bookwarden.incidents import affected, service
from bookwarden.incidents.affected import (
    Acknowledgement,
    BreachScope,
    BreachTarget,
    InstitutionIncident,
    Named,
    PatronNotices,
)
from bookwarden.incidents.models import IncidentCategory, IncidentState, Severity
from bookwarden.incidents.service import REVIEW_FIELDS, IncidentDetail, IncidentSummary

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 422))
HANDLE = Depends(requires(Permission.PLATFORM_INCIDENTS_HANDLE))
READ = Depends(requires(Permission.INCIDENTS_READ))
NOTIFY = Depends(requires(Permission.INCIDENTS_NOTIFY))
OPERATOR_TAGS = ["operator: incidents"]
TAGS = ["incidents"]
Title = line(service.MAX_TITLE)
Text = lines(service.MAX_TEXT)
AlertRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$")]
Address = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f:.]{2,45}$")]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenIn(Input):
    title: Title = Field(description="a short label; names no person")
    summary: Text = Field(description="what happened, as known now; names no person (list subjects at triage)")
    severity: Severity = Severity.MEDIUM
    category: IncidentCategory = IncidentCategory.OTHER


class FromAlertIn(Input):
    alert: AlertRef = Field(description="the monitoring alert's id or reference")
    summary: Text
    title: Title | None = None
    severity: Severity = Severity.HIGH
    category: IncidentCategory = IncidentCategory.OTHER


class AssignIn(Input):
    handler_id: UUID = Field(description="an active operator account whose role handles incidents")


class SubjectIn(Input):
    institution: UUID
    patron_id: UUID


class TriageIn(Input):
    severity: Severity
    category: IncidentCategory
    institutions: list[UUID] = Field(default_factory=list, max_length=1000)
    subjects: list[SubjectIn] = Field(default_factory=list, max_length=10_000)
    note: Text | None = None


class StepIn(Input):
    step: Literal["contained", "eradicated", "recovered"]
    note: Text = Field(description="what was done")


class ReviewIn(Input):
    root_cause: Text
    actions_taken: Text
    lessons_learned: Text
    follow_up: Text


class CloseIn(Input):
    review: ReviewIn


class TargetsIn(Input):
    """What the breach touched: at least one of these (the audit trail is searched for events naming them)."""

    actors: list[UUID] = Field(default_factory=list, max_length=affected.MAX_TARGETS, description="who acted")
    # Checked as IP addresses by the service (after the incident is found): a schema format of its own would be
    # one more format every client and fuzzer must know.
    addresses: list[Address] = Field(default_factory=list, max_length=affected.MAX_TARGETS, description="IPv4 or IPv6")
    institutions: list[UUID] = Field(
        default_factory=list, max_length=affected.MAX_TARGETS, description="every event of these institutions"
    )
    records: list[UUID] = Field(default_factory=list, max_length=affected.MAX_TARGETS, description="records acted on")

    def listed(self) -> list[BreachTarget]:
        return [
            *(BreachTarget("actor", str(v)) for v in self.actors),
            *(BreachTarget("address", str(v)) for v in self.addresses),
            *(BreachTarget("tenant", str(v)) for v in self.institutions),
            *(BreachTarget("target", str(v)) for v in self.records),
        ]


class BreachIn(Input):
    since: datetime
    until: datetime | None = None
    targets: TargetsIn
    data: list[Category] = Field(min_length=1)
    measures: Text = Field(description="what was done to contain the breach and protect the people affected")
    contact: line(320) = Field(description="whom the institution contacts about the breach")
    notify: bool = Field(default=True, description="send each institution its notice now (false: review first)")


class InstitutionIn(Input):
    institution: UUID


class DeclineIn(Input):
    institution: UUID
    reason: Text


class PatronDeclineIn(Input):
    reason: Text = Field(description="why the patrons are not notified (GDPR Art. 34(3))")
    patron_ids: list[UUID] | None = Field(default=None, max_length=10_000, description="default: every prepared one")


class IncidentList(BaseModel):
    items: list[IncidentSummary]


class InstitutionIncidentList(BaseModel):
    items: list[InstitutionIncident]


class Sent(BaseModel):
    recipients: int


class Counted(BaseModel):
    count: int


class Asked(BaseModel):
    id: UUID
    status: str


# -- the handlers -------------------------------------------------------------------------------


@router.post("/operator/incidents", status_code=201, response_model=IncidentDetail, tags=OPERATOR_TAGS)
def open_incident(body: OpenIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Open an incident by hand; the CISO is mailed at once."""
    with platform_session(db) as session:
        incident = service.open_incident(
            session, principal, title=body.title, summary=body.summary, severity=body.severity, category=body.category
        )
        return service.detail_of(session, incident)


@router.post("/operator/incidents/from-alert", status_code=201, response_model=IncidentDetail, tags=OPERATOR_TAGS)
def promote_alert(body: FromAlertIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Promote a monitoring alert to an incident (the same alert twice, while its incident is open: that one)."""
    with platform_session(db) as session:
        incident = service.open_from_alert(
            session,
            principal,
            body.alert,
            body.summary,
            title=body.title,
            severity=body.severity,
            category=body.category,
        )
        return service.detail_of(session, incident)


@router.get("/operator/incidents", response_model=IncidentList, tags=OPERATOR_TAGS)
def list_incidents(open_only: bool = False, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Incidents, newest first."""
    with platform_session(db) as session:
        return IncidentList(items=service.list_incidents(session, principal, open_only=open_only))


@router.get(
    "/operator/incidents/{incident_id}", response_model=IncidentDetail, tags=OPERATOR_TAGS, responses=responses(404)
)
def read_incident(incident_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """One incident with its timeline."""
    with platform_session(db) as session:
        return service.read(session, principal, incident_id)


@router.post(
    "/operator/incidents/{incident_id}/assign",
    response_model=IncidentDetail,
    tags=OPERATOR_TAGS,
    responses=responses(404, 409),
)
def assign(incident_id: UUID, body: AssignIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Assign to an incident handler."""
    with platform_session(db) as session:
        return service.detail_of(session, service.assign(session, principal, incident_id, body.handler_id))


@router.post(
    "/operator/incidents/{incident_id}/triage",
    response_model=IncidentDetail,
    tags=OPERATOR_TAGS,
    responses=responses(404, 409),
)
def triage(incident_id: UUID, body: TriageIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Severity, category, the institutions and patrons affected (each institution then sees the incident)."""
    return affected.triage(
        db,
        principal,
        incident_id,
        severity=body.severity,
        category=body.category,
        institutions=body.institutions,
        subjects=[Named(s.institution, s.patron_id) for s in body.subjects],
        note=body.note,
    )


@router.post(
    "/operator/incidents/{incident_id}/steps",
    response_model=IncidentDetail,
    tags=OPERATOR_TAGS,
    responses=responses(404, 409),
)
def advance(incident_id: UUID, body: StepIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Containment, eradication, recovery: in that order, each with what was done."""
    with platform_session(db) as session:
        incident = service.advance(session, principal, incident_id, IncidentState(body.step), body.note)
        return service.detail_of(session, incident)


@router.post(
    "/operator/incidents/{incident_id}/close",
    response_model=IncidentDetail,
    tags=OPERATOR_TAGS,
    responses=responses(404, 409),
)
def close(incident_id: UUID, body: CloseIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Close with the post-incident review (root cause, actions taken, lessons learned, follow-up)."""
    review = {f: getattr(body.review, f) for f in REVIEW_FIELDS}
    with platform_session(db) as session:
        return service.detail_of(session, service.close(session, principal, incident_id, review))


@router.post(
    "/operator/incidents/{incident_id}/breach",
    response_model=BreachScope,
    tags=OPERATOR_TAGS,
    responses=responses(404, 409),
)
def mark_breach(incident_id: UUID, body: BreachIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Mark a personal-data breach: the institutions and patrons affected are found in the audit trail, each
    institution's clock starts, and (unless notify is false) each is sent its notice."""
    return affected.mark_breach(
        db,
        principal,
        incident_id,
        since=body.since,
        until=body.until,
        targets=body.targets.listed(),
        data=body.data,
        measures=body.measures,
        contact=body.contact,
        notify=body.notify,
    )


@router.post(
    "/operator/incidents/{incident_id}/breach/notices",
    response_model=Sent,
    tags=OPERATOR_TAGS,
    responses=responses(404, 409),
)
def notify_institution(
    incident_id: UUID, body: InstitutionIn, principal: Principal = HANDLE, db: Database = Depends(database)
):
    """Send one affected institution its breach notice (once)."""
    return Sent(recipients=affected.notify_institution(db, principal, incident_id, body.institution))


@router.post(
    "/operator/incidents/{incident_id}/breach/declines",
    status_code=204,
    tags=OPERATOR_TAGS,
    responses=responses(404, 409),
)
def decline_institution(
    incident_id: UUID, body: DeclineIn, principal: Principal = HANDLE, db: Database = Depends(database)
):
    """Decide not to notify one affected institution, with the reason (recorded; never after a notice)."""
    affected.decline_institution(db, principal, incident_id, body.institution, body.reason)


# -- the institution ----------------------------------------------------------------------------


@router.get("/incidents", response_model=InstitutionIncidentList, tags=TAGS)
def institution_incidents(principal: Principal = READ, db: Database = Depends(database)):
    """The incidents that affect this institution, newest first."""
    return InstitutionIncidentList(items=affected.institution_incidents(db, principal))


@router.get("/incidents/{incident_id}", response_model=InstitutionIncident, tags=TAGS, responses=responses(404))
def institution_incident(incident_id: UUID, principal: Principal = READ, db: Database = Depends(database)):
    """One incident that affects this institution: its patrons affected (by id), its breach clock (when the
    platform must tell it, when its authority must be told) and every notice or decision not to notify."""
    return affected.institution_incident(db, principal, incident_id)


@router.get(
    "/incidents/{incident_id}/patron-notices", response_model=PatronNotices, tags=TAGS, responses=responses(404)
)
def patron_notices(incident_id: UUID, principal: Principal = NOTIFY, db: Database = Depends(database)):
    """The notice prepared for the affected patrons, and who has been told, or not."""
    with tenant_scope(db, principal) as session:
        return affected.patron_notices(session, principal, incident_id)


@router.post(
    "/incidents/{incident_id}/patron-notices/send",
    status_code=202,
    response_model=Asked,
    tags=TAGS,
    responses=responses(404, 409),
)
def ask_to_send(incident_id: UUID, principal: Principal = NOTIFY, db: Database = Depends(database)):
    """Ask for the prepared notices to be sent: another holder of incidents.notify approves
    (POST /api/v1/approvals/{id}/approve), and approving sends them, each once."""
    with tenant_scope(db, principal) as session:
        asked = approvals.ask(
            session, principal, SensitiveAction.SEND_BREACH_NOTICES, {"incident_id": str(incident_id)}
        )
        return Asked(id=asked.id, status=asked.status)


@router.post(
    "/incidents/{incident_id}/patron-notices/declines",
    response_model=Counted,
    tags=TAGS,
    responses=responses(404, 409),
)
def decline_patrons(
    incident_id: UUID, body: PatronDeclineIn, principal: Principal = NOTIFY, db: Database = Depends(database)
):
    """Decide not to notify the patrons (all prepared, or those named), with the reason."""
    with tenant_scope(db, principal) as session:
        return Counted(count=affected.decline_patrons(session, principal, incident_id, body.reason, body.patron_ids))


@router.post(
    "/incidents/{incident_id}/acknowledgement",
    response_model=Acknowledgement,
    tags=TAGS,
    responses=responses(404, 409),
)
def acknowledge(incident_id: UUID, principal: Principal = NOTIFY, db: Database = Depends(database)):
    """Acknowledge receipt of the breach notice (the institution, as controller): the platform stops reminding
    this institution. Again: nothing changes, and the answer says when it was acknowledged (`already`)."""
    return affected.acknowledge(db, principal, incident_id)
