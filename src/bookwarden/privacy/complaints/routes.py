"""Complaints over HTTP: a signed-in patron or staff on their behalf registers one; complaint handlers
follow the SLA view, read a complaint and answer it."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database
from bookwarden.notify.service import EmailAddress
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.complaints.service import SlaState

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy: complaints"], responses=responses(401, 403, 422))
REGISTER = Depends(requires(Permission.PRIVACY_COMPLAINTS_REGISTER))
HANDLE = Depends(requires(Permission.PRIVACY_COMPLAINTS_HANDLE))
PATRON = Depends(requires(Permission.SELF_SERVICE))

Subject = line(200)
Body = lines(10_000)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OwnComplaintIn(Input):
    subject: Subject
    body: Body
    contact_email: EmailAddress | None = None  # default: the address of the signed-in account


class ComplaintIn(OwnComplaintIn):
    patron_id: UUID  # default contact_email: the address on the patron's record


class AnswerIn(Input):
    answer: Body


# What the SLA view holds is exactly what the API shows: one model, defined with the service.
ComplaintOut = complaints.ComplaintSla


class ComplaintDetailOut(ComplaintOut):
    subject: str
    body: str
    contact_email: str
    answer: str | None


class ComplaintList(BaseModel):
    items: list[ComplaintOut]


@router.post("/complaints", status_code=201, response_model=ComplaintOut, responses=responses(404))
def register_complaint(body: ComplaintIn, principal: Principal = REGISTER, db: Database = Depends(database)):
    """Register a complaint on a patron's behalf; the acknowledgement is mailed at once."""
    with tenant_scope(db, principal) as session:
        complaint = complaints.register_for_patron(
            session,
            principal,
            body.patron_id,
            subject=body.subject,
            body=body.body,
            contact_email=body.contact_email,
        )
        return complaints.sla_of(session, complaint.id)


@router.post("/me/complaints", status_code=201, response_model=ComplaintOut)
def register_own_complaint(body: OwnComplaintIn, principal: Principal = PATRON, db: Database = Depends(database)):
    """A signed-in patron registers their own complaint; the acknowledgement is mailed at once."""
    with tenant_scope(db, principal) as session:
        complaint = complaints.register_own(
            session, principal, subject=body.subject, body=body.body, contact_email=body.contact_email
        )
        return complaints.sla_of(session, complaint.id)


@router.get("/me/complaints", response_model=ComplaintList)
def list_own_complaints(principal: Principal = PATRON, db: Database = Depends(database)):
    """The signed-in patron's complaints and where each stands."""
    with tenant_scope(db, principal) as session:
        return ComplaintList(items=complaints.own_complaints(session, principal))


@router.get("/complaints", response_model=ComplaintList)
def complaint_sla(
    principal: Principal = HANDLE,
    db: Database = Depends(database),
    state: Annotated[SlaState, Query(description="open, at_risk (35 days), overdue (45 days), answered, all")] = (
        SlaState.OPEN
    ),
):
    """The SLA view: complaints with their deadlines and days remaining, the most urgent first."""
    with tenant_scope(db, principal) as session:
        return ComplaintList(items=complaints.sla_view(session, principal, state))


@router.get("/complaints/{complaint_id}", response_model=ComplaintDetailOut, responses=responses(404))
def read_complaint(complaint_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """One complaint with what the complainant wrote and the answer given."""
    with tenant_scope(db, principal) as session:
        sla, opened = complaints.read(session, principal, complaint_id)
        return ComplaintDetailOut(**sla.model_dump(), **opened.__dict__)


@router.post("/complaints/{complaint_id}/answer", response_model=ComplaintOut, responses=responses(404, 409))
def answer_complaint(
    complaint_id: UUID, body: AnswerIn, principal: Principal = HANDLE, db: Database = Depends(database)
):
    """Answer a complaint: it is closed and the answer is mailed to the complainant."""
    with tenant_scope(db, principal) as session:
        complaints.answer(session, principal, complaint_id, body.answer)
        return complaints.sla_of(session, complaint_id)
