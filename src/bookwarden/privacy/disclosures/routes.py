"""Disclosures over HTTP: record one (objectors left out, subjects told per policy), list and read them,
set the notice policy; the signed-in patron lists the disclosures about them."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.classification import Category
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import PURPOSE_PATTERN, SharingPath, sharing_marker
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database
from bookwarden.identity.accounts import service as accounts
from bookwarden.privacy.disclosures import service as disclosures
from bookwarden.privacy.disclosures.models import DisclosureKind, LegalBasis

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy: disclosures"], responses=responses(401, 403, 422))
MANAGE = Depends(requires(Permission.PRIVACY_DISCLOSURES_MANAGE))
PATRON = Depends(requires(Permission.SELF_SERVICE))

PurposeName = Annotated[str, StringConstraints(pattern=PURPOSE_PATTERN)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DisclosureIn(Input):
    recipient: line(200)
    kind: DisclosureKind
    purpose: PurposeName  # a name, as objections name purposes (purpose:<name>)
    basis: LegalBasis  # legal_obligation: objections cannot stop it
    categories: Annotated[list[Category], Field(min_length=1, max_length=len(Category))]
    patron_ids: Annotated[list[UUID], Field(min_length=1, max_length=disclosures.MAX_SUBJECTS)]
    reference: line(200) | None = None
    notice_withheld_reason: lines(500) | None = None  # legal requests only: the law forbids telling


class DisclosureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    recipient: str
    kind: DisclosureKind
    purpose: str
    basis: LegalBasis
    categories: list[Category]
    reference: str | None
    subject_count: int
    refused_count: int
    notices_queued: int
    notice_withheld_reason: str | None
    disclosed_by: UUID
    disclosed_at: datetime


class DisclosureMadeOut(DisclosureOut):
    patron_ids: list[UUID]  # share the data of these patrons, and no others
    refused_patron_ids: list[UUID]  # left out: they objected, or their processing is restricted


class DisclosureDetailOut(DisclosureOut):
    patron_ids: list[UUID]


class DisclosureList(BaseModel):
    items: list[DisclosureOut]


class NoticePolicyOut(BaseModel):
    kind: DisclosureKind
    notify: bool
    default: bool


class NoticePolicyList(BaseModel):
    items: list[NoticePolicyOut]


class NoticePolicyIn(Input):
    notify: bool


@router.post(
    "/disclosures",
    status_code=201,
    response_model=DisclosureMadeOut,
    responses=responses(404, 409),
    openapi_extra=sharing_marker(SharingPath.DISCLOSURE),
)
def record_disclosure(body: DisclosureIn, principal: Principal = MANAGE, db: Database = Depends(database)):
    """Record a sharing of personal data with a third party before it happens: patrons who objected, or
    whose processing is restricted, are left out (unless the basis is a legal obligation), and the subjects
    are told when the policy says so. Share only the data of the patrons returned in patron_ids. 409 objected
    when every patron named is left out; 403 direct-marketing-refused for a marketing purpose."""
    with tenant_scope(db, principal) as session:
        made = disclosures.disclose(
            session,
            recipient=body.recipient,
            purpose=body.purpose,
            basis=body.basis,
            categories=body.categories,
            patron_ids=body.patron_ids,
            kind=body.kind,
            reference=body.reference,
            notice_withheld_reason=body.notice_withheld_reason,
            actor=principal,
        )
        return DisclosureMadeOut(
            **DisclosureOut.model_validate(made.disclosure).model_dump(),
            patron_ids=made.patron_ids,
            refused_patron_ids=made.refused_patron_ids,
        )


@router.get("/disclosures", response_model=DisclosureList)
def list_disclosures(
    principal: Principal = MANAGE,
    db: Database = Depends(database),
    patron_id: Annotated[UUID | None, Query(description="only the disclosures naming this patron")] = None,
):
    """The institution's disclosures to third parties, newest first (at most 500)."""
    with tenant_scope(db, principal) as session:
        return DisclosureList(items=disclosures.list_disclosures(session, principal, patron_id=patron_id))


@router.get("/disclosures/{disclosure_id}", response_model=DisclosureDetailOut, responses=responses(404))
def read_disclosure(disclosure_id: UUID, principal: Principal = MANAGE, db: Database = Depends(database)):
    """One disclosure and the patrons it named."""
    with tenant_scope(db, principal) as session:
        found, subjects = disclosures.read(session, principal, disclosure_id)
        return DisclosureDetailOut(**DisclosureOut.model_validate(found).model_dump(), patron_ids=subjects)


@router.get("/me/disclosures", response_model=DisclosureList)
def own_disclosures(principal: Principal = PATRON, db: Database = Depends(database)):
    """The disclosures of the signed-in patron's data to third parties."""
    with tenant_scope(db, principal) as session:
        patron_id = accounts.own_patron_id(session, principal)
        return DisclosureList(items=disclosures.own_disclosures(session, principal, patron_id))


@router.get("/disclosure-policy", response_model=NoticePolicyList)
def disclosure_policy(principal: Principal = MANAGE, db: Database = Depends(database)):
    """Per kind of disclosure, whether the subjects are told (and whether that is the default)."""
    with tenant_scope(db, principal) as session:
        found = disclosures.notice_policies(session, principal)
        return NoticePolicyList(items=[NoticePolicyOut(**p.__dict__) for p in found])


@router.put("/disclosure-policy/{kind}", response_model=NoticePolicyOut)
def set_disclosure_policy(
    kind: DisclosureKind, body: NoticePolicyIn, principal: Principal = MANAGE, db: Database = Depends(database)
):
    """Whether subjects are told of disclosures of this kind."""
    with tenant_scope(db, principal) as session:
        return NoticePolicyOut(**disclosures.set_notice_policy(session, principal, kind, body.notify).__dict__)
