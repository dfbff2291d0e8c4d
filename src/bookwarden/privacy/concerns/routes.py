"""Concerns over HTTP: anyone reports (a signed-in patron, or the open form with an address to be answered at);
privacy and security officers list and read the reports.

The open form comes before authentication, so it declares no permission (see `open_routes` in
tests/api/test_api.py): it is throttled per network address, and names only the institution it reports to.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import lines
from bookwarden.db.session import Database
from bookwarden.identity.signin.routes import source_address, too_many_attempts
from bookwarden.identity.throttle import TooManyAttempts
from bookwarden.notify.service import EmailAddress
from bookwarden.privacy.concerns import service as concerns
from bookwarden.privacy.concerns.models import ConcernKind
from bookwarden.privacy.concerns.service import ConcernDetail, ConcernReceived, ConcernSummary

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy: concerns"], responses=responses(422))
HANDLE = Depends(requires(Permission.PRIVACY_CONCERNS_HANDLE))
PATRON = Depends(requires(Permission.SELF_SERVICE))
Slug = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Description = lines(concerns.MAX_DESCRIPTION)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OwnConcernIn(Input):
    kind: ConcernKind = Field(description="unauthorised_access, or child_data (a child's data is held)")
    description: Description = Field(description="what happened: which account, when, what you saw")
    contact_email: EmailAddress | None = None  # default: the address of the signed-in account


class ConcernFormIn(Input):
    institution: Slug = Field(description="the institution's identifier")
    kind: ConcernKind
    description: Description
    contact_email: EmailAddress = Field(description="where the institution answers you (it is not mailed now)")


class ConcernList(BaseModel):
    items: list[ConcernSummary]


@router.post("/concerns/form", status_code=201, response_model=ConcernReceived, responses=responses(404, 429))
def report_without_account(body: ConcernFormIn, request: Request, db: Database = Depends(database)):
    """Report suspected unauthorised access to an account, or that a child's data is held, without an account.
    The institution's privacy and security staff are told at once. Throttled per network address (429)."""
    try:
        return concerns.report_anonymous(
            db,
            institution=body.institution,
            kind=body.kind,
            description=body.description,
            contact_email=body.contact_email,
            source_address=source_address(request),
        )
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)


@router.post("/me/concerns", status_code=201, response_model=ConcernReceived, responses=responses(401, 403))
def report_own(body: OwnConcernIn, principal: Principal = PATRON, db: Database = Depends(database)):
    """A signed-in patron reports; the institution's privacy and security staff are told at once."""
    with tenant_scope(db, principal) as session:
        return concerns.report_own(session, principal, body.kind, body.description, body.contact_email)


@router.get("/concerns", response_model=ConcernList, responses=responses(401, 403))
def list_concerns(principal: Principal = HANDLE, db: Database = Depends(database)):
    """The institution's reports, newest first (what each says is read one at a time)."""
    with tenant_scope(db, principal) as session:
        return ConcernList(items=concerns.list_concerns(session, principal))


@router.get("/concerns/{concern_id}", response_model=ConcernDetail, responses=responses(401, 403, 404))
def read_concern(concern_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """One report, with what the reporter wrote and where to answer them."""
    with tenant_scope(db, principal) as session:
        return concerns.read(session, principal, concern_id)
