"""Data-subject requests over HTTP.

- a signed-in patron asks about their own data (/me/requests), staff ask on a patron's behalf;
- the institution's privacy officers work the queue: read, decide, carry out, hold and resume;
- anyone may use the form (no account): it answers alike whether or not a patron matched, and a
  request to the platform that names no institution is answered asking which, then forwarded.

The three form routes come before authentication, so they declare no permission (see
`open_routes` in tests/api/test_api.py): the form and the forwarding answer everyone alike, and the
verification is authorised by the one-time code mailed to the address on file.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from typing import Annotated, Any, Literal, Union
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, create_model

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import problem, responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database
from bookwarden.identity.signin.routes import source_address, too_many_attempts
from bookwarden.identity.throttle import TooManyAttempts
from bookwarden.library.schemas import LookupField
from bookwarden.privacy.requests import form as request_form
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.form import CodeResult, FormAnswer
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.requests.service import Corrections, Decision, QueueView
from bookwarden.privacy.restrictions import service as restrictions

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy: requests"], responses=responses(401, 403, 422))
REGISTER = Depends(requires(Permission.PRIVACY_REQUESTS_REGISTER))
HANDLE = Depends(requires(Permission.PRIVACY_REQUESTS_HANDLE))
PATRON = Depends(requires(Permission.SELF_SERVICE))

Reason = lines(2_000)
ObjectionScope = Annotated[str, StringConstraints(pattern=requests.OBJECTION_SCOPE)]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Identifier = line(254)
Code = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaffIn(Input):
    patron_id: UUID


class FormBase(Input):
    institution: Slug | None = Field(None, description="the institution's identifier; none: we ask which")
    by: LookupField = Field(description="how you identify yourself: email, institutional_id or barcode")
    value: Identifier
    notice_version: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="the privacy notice version you were shown; another than the one in force: 409"
    )


def _per_kind(base: type[BaseModel], name: str):
    """One body schema per kind, told apart by `kind`: an objection must carry its scope, a rectification
    its corrections, and no other kind may carry either. The schema is then exactly what is accepted."""
    variants = []
    for kind in RequestKind:
        fields: dict[str, Any] = {"kind": (Literal[kind.value], ...)}
        if kind is RequestKind.OBJECTION:
            fields["objection_scope"] = (
                ObjectionScope,
                Field(description='"third_party_disclosure" or "purpose:<name>"'),
            )
        if kind is RequestKind.RECTIFICATION:
            fields["corrections"] = (Corrections, Field(description="the patron fields to correct, and their values"))
        variants.append(create_model(f"{name}{kind.value.title()}", __base__=base, **fields))
    return Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007 - built at runtime


OwnRequestIn = _per_kind(Input, "OwnRequest")
RequestIn = _per_kind(StaffIn, "Request")
FormIn = _per_kind(FormBase, "Form")


class ApproveIn(Input):
    decision: Literal["approve"]


class DenyIn(Input):
    decision: Literal["deny"]
    reason: Reason = Field(description="why (the patron is entitled to know)")


DecisionIn = Annotated[Union[ApproveIn, DenyIn], Field(discriminator="decision")]  # noqa: UP007


class HoldIn(Input):
    reason: Reason
    until: AwareDatetime | None = Field(None, description="when the hold ends by itself; none: until lifted")


class RequestPolicyIn(Input):
    respond_within_days: Annotated[int, Field(ge=1, le=90)]
    remind_before_days: Annotated[int, Field(ge=0, le=30)] = requests.REMIND_BEFORE_DAYS


class RequestPolicyOut(BaseModel):
    respond_within_days: int
    remind_before_days: int
    default: bool


class VerifyIn(Input):
    institution: Slug
    verification_id: UUID
    code: Code


class ForwardIn(Input):
    reference: Reference = Field(description="the inquiry_reference the form answered with")
    institution: Slug
    corrections: Corrections | None = Field(None, description="rectification only: the patron fields to correct")


RequestOut = requests.RequestSummary


class RequestDetailOut(RequestOut):
    corrections: dict[str, Any] | None
    decision_reason: str | None
    hold_reason: str | None


class RequestList(BaseModel):
    items: list[RequestOut]


def _corrections(body) -> dict | None:
    corrections = getattr(body, "corrections", None)
    return corrections.model_dump(mode="json", exclude_unset=True) if corrections is not None else None


def _scope(body) -> str | None:
    return getattr(body, "objection_scope", None)


# -- asking ----------------------------------------------------------------------------------


@router.post("/me/requests", status_code=201, response_model=RequestOut)
def register_own_request(body: OwnRequestIn, principal: Principal = PATRON, db: Database = Depends(database)):
    """A signed-in patron asks about their own data; their sign-in verified who they are."""
    with tenant_scope(db, principal) as session:
        made = requests.register_own(
            session, principal, body.kind, objection_scope=_scope(body), corrections=_corrections(body)
        )
        return requests.summary_of(session, made.id)


@router.get("/me/requests", response_model=RequestList)
def list_own_requests(principal: Principal = PATRON, db: Database = Depends(database)):
    """The signed-in patron's requests and where each stands."""
    with tenant_scope(db, principal) as session:
        return RequestList(items=requests.own_requests(session, principal))


@router.post("/requests", status_code=201, response_model=RequestOut, responses=responses(404))
def register_request(body: RequestIn, principal: Principal = REGISTER, db: Database = Depends(database)):
    """Staff register a request on a patron's behalf, having seen proof of who the patron is."""
    with tenant_scope(db, principal) as session:
        made = requests.register_for_patron(
            session,
            principal,
            body.patron_id,
            body.kind,
            objection_scope=_scope(body),
            corrections=_corrections(body),
        )
        return requests.summary_of(session, made.id)


# -- the queue -------------------------------------------------------------------------------


@router.get("/requests", response_model=RequestList)
def request_queue(
    principal: Principal = HANDLE,
    db: Database = Depends(database),
    view: Annotated[QueueView, Query(description="open, overdue, on_legal_hold, closed, all")] = QueueView.OPEN,
):
    """The institution's queue, the most urgent first."""
    with tenant_scope(db, principal) as session:
        return RequestList(items=requests.queue(session, principal, view))


@router.get("/requests/{request_id}", response_model=RequestDetailOut, responses=responses(404))
def read_request(request_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """One request, with the corrections it asks for and the reasons given."""
    with tenant_scope(db, principal) as session:
        found, opened = requests.read(session, principal, request_id)
        return RequestDetailOut(**found.model_dump(), **opened.__dict__)


@router.post("/requests/{request_id}/decision", response_model=RequestOut, responses=responses(404, 409))
def decide_request(request_id: UUID, body: DecisionIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Approve or deny (with a reason) a verified request. A staff-initiated erasure is not approved at once:
    the answer names the approval (approval_id) a second officer gives at POST /api/v1/approvals/{id}/approve."""
    with tenant_scope(db, principal) as session:
        requests.decide(session, principal, request_id, Decision(body.decision), getattr(body, "reason", None))
        return requests.summary_of(session, request_id)


@router.post("/requests/{request_id}/start", response_model=RequestOut, responses=responses(404, 409))
def start_request(request_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """An approved request is being carried out."""
    with tenant_scope(db, principal) as session:
        requests.start(session, principal, request_id)
        return requests.summary_of(session, request_id)


@router.post("/requests/{request_id}/complete", response_model=RequestOut, responses=responses(404, 409))
def complete_request(request_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Carry the request out (export, erasure, correction, restriction, objection) and close it."""
    with tenant_scope(db, principal) as session:
        requests.complete(session, principal, request_id)
        return requests.summary_of(session, request_id)


@router.post("/requests/{request_id}/hold", response_model=RequestOut, responses=responses(404, 409))
def hold_request(request_id: UUID, body: HoldIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Put an open request on legal hold: why, by whom, until when."""
    with tenant_scope(db, principal) as session:
        requests.hold(session, principal, request_id, body.reason, body.until)
        return requests.summary_of(session, request_id)


@router.post("/requests/{request_id}/resume", response_model=RequestOut, responses=responses(404, 409))
def resume_request(request_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Lift a legal hold: the request goes back to the state it was held in."""
    with tenant_scope(db, principal) as session:
        requests.resume(session, principal, request_id)
        return requests.summary_of(session, request_id)


@router.get("/request-policy", response_model=RequestPolicyOut)
def read_request_policy(principal: Principal = HANDLE, db: Database = Depends(database)):
    """How many days the institution takes to answer a request, and when officers are reminded."""
    with tenant_scope(db, principal) as session:
        return RequestPolicyOut(**requests.read_policy(session, principal).__dict__)


@router.put("/request-policy", response_model=RequestPolicyOut)
def set_request_policy(body: RequestPolicyIn, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Set the institution's deadline; requests received from now on are due that many days after receipt."""
    with tenant_scope(db, principal) as session:
        policy = requests.set_policy(session, principal, body.respond_within_days, body.remind_before_days)
        return RequestPolicyOut(**policy.__dict__)


@router.delete("/restrictions/{patron_id}", status_code=204, responses=responses(404))
def lift_restriction(patron_id: UUID, principal: Principal = HANDLE, db: Database = Depends(database)):
    """Lift a restriction of processing: the patron record can be changed again."""
    with tenant_scope(db, principal) as session:
        restrictions.lift(session, principal, patron_id)
    return Response(status_code=204)


# -- the form (no account) -------------------------------------------------------------------


@router.post("/requests/form", status_code=202, response_model=FormAnswer, responses=responses(404, 409, 429))
def submit_form(body: FormIn, request: Request, db: Database = Depends(database)):
    """Ask without an account. A code goes to the address on file of the patron you name, if one matches;
    the answer is the same either way. Without an institution, the answer asks which one."""
    try:
        return request_form.submit(
            db,
            institution=body.institution,
            kind=body.kind,
            by=body.by,
            value=body.value,
            source_address=source_address(request),
            objection_scope=_scope(body),
            corrections=_corrections(body),
            notice_version=body.notice_version,
        )
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)


CODE_PROBLEMS = {
    CodeResult.WRONG: ("verification-code-wrong", "Code not valid", "the code is not valid for this verification"),
    CodeResult.EXPIRED: (
        "verification-code-expired",
        "Code expired",
        "the code has expired or was used already; send the form again for a new one",
    ),
    CodeResult.EXHAUSTED: (
        "verification-code-exhausted",
        "Too many tries",
        "this code has had all its tries; send the form again for a new one",
    ),
}


class VerifiedOut(BaseModel):
    status: str
    request: RequestOut


@router.post("/requests/form/verify", response_model=VerifiedOut, responses=responses(401))
def verify_form(body: VerifyIn, request: Request, db: Database = Depends(database)):
    """Confirm a request with the code mailed to the address on file: the request's identity is verified."""
    check = request_form.verify(db, institution=body.institution, verification_id=body.verification_id, code=body.code)
    if check.result is CodeResult.VERIFIED:
        return VerifiedOut(status="identity_verified", request=check.request)
    slug, title, detail = CODE_PROBLEMS[check.result]
    if check.result is CodeResult.WRONG:
        detail = f"{detail}; {check.tries_left} tries left"
    return problem(401, slug, title, detail, request)


@router.post("/inquiries/forward", status_code=202, response_model=FormAnswer, responses=responses(404, 409, 429))
def forward_inquiry(body: ForwardIn, request: Request, db: Database = Depends(database)):
    """Name the institution of a request sent without one: it is forwarded into that institution's queue."""
    try:
        return request_form.forward(
            db,
            reference=body.reference,
            institution=body.institution,
            source_address=source_address(request),
            corrections=_corrections(body),
        )
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
