"""Data-subject requests: received, identity verified, decided by the institution, carried out.

The institution is the controller: every request sits in its own queue (a tenant table, RLS) and
its privacy officers decide. Operator staff (the processor) cannot approve, deny or carry one out,
whatever their grant (`_institution_only`).

Lifecycle (every transition is one audit event, in the transaction that makes it):

    received -> identity_verified -> approved | denied (reason) -> in_progress -> completed
    any open state -> on_legal_hold (reason, who, until) -> back to the state it was held in

A move the table below does not list is refused with 409. Channels: the patron signed in (verified
by the sign-in), staff on the patron's behalf (verified by the staff member, who saw proof), and
the unauthenticated form (privacy/requests/form.py: verified by a one-time code mailed to the
address on file). A staff-initiated erasure needs a second officer: approving it asks through
access/approvals/service.py (maker-checker), and the request is approved when another officer, who is
neither the asker nor the one who registered it, approves that.

Deadlines are data: the due date is set at receipt from the institution's policy (default 30
days); an hourly job reminds the privacy officers before it and escalates once it has passed, to
exactly the people complaints escalate to (privacy/complaints/service.py EscalationRecipients). The job
also resumes a request whose hold has an end that has passed, and removes a form's request never
confirmed with its code within a day (nobody proved they asked; the trail keeps that it lapsed).

A completed or denied request is kept 3 years after it closed, to show how it was handled, then deleted
with its codes (`forget_closed`, daily: privacy/requests/jobs.py), unless a legal hold keeps all its
patron's data. What carried it out (an erasure certificate, an objection) keeps its own record.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from sqlalchemy import Select, delete, func, select, text

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.clock import db_now
from bookwarden.core.errors import (
    BookwardenError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SegregationOfDutiesError,
)
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.core.sensitive import check_fields
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.crypto.keyring import KeyDestroyed
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity.models import Account, AccountKind
from bookwarden.identity.tokens import service as tokens
from bookwarden.library.models import Patron
from bookwarden.library.schemas import PatronUpdate
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import mail_time, queue_mail
from bookwarden.privacy.complaints.service import EscalationRecipients
from bookwarden.privacy.escalations.models import Level, SubjectKind
from bookwarden.privacy.escalations.service import raise_escalation
from bookwarden.privacy.requests import fulfilment as request_fulfilment
from bookwarden.privacy.requests import notices as request_notices
from bookwarden.privacy.requests.models import (
    PrivacyRequest,
    RequestChannel,
    RequestKind,
    RequestPolicy,
    RequestState,
    Verification,
)
from bookwarden.privacy.retention.holds import patrons_held_entirely
from bookwarden.tenancy.service import institution_name

log = structlog.get_logger()

TABLE = "privacy_requests"
TARGET = "privacy_request"
RESPOND_WITHIN_DAYS = 30
REMIND_BEFORE_DAYS = 7
DEADLINES = "privacy.request_deadlines"
DEADLINES_EVERY = timedelta(hours=1)
DEADLINES_BATCH = 500
UNCONFIRMED = timedelta(days=1)  # a form's request not confirmed by then lapses (its code lasted 30 minutes)
LIST_LIMIT = 500
RETENTION_JOB = "privacy.request_retention"
# The registry's "3 years after the request is completed or denied" (privacy/registry.py PRIVACY_REQUESTS;
# privacy/periods.py checks).
KEEP_AFTER_CLOSING = timedelta(days=1095)
PLATFORM_KINDS = frozenset(
    {PrincipalKind.OPERATOR, PrincipalKind.OPERATOR_TOKEN, PrincipalKind.CONSOLE, PrincipalKind.SYSTEM}
)
OBJECTION_SCOPE = r"^(third_party_disclosure|purpose:[a-z0-9_]{1,72})$"  # as objections.py accepts, within 80

S = RequestState
ALLOWED: dict[RequestState, frozenset[RequestState]] = {
    S.RECEIVED: frozenset({S.IDENTITY_VERIFIED, S.ON_LEGAL_HOLD}),
    S.IDENTITY_VERIFIED: frozenset({S.APPROVED, S.DENIED, S.ON_LEGAL_HOLD}),
    S.APPROVED: frozenset({S.IN_PROGRESS, S.ON_LEGAL_HOLD}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.ON_LEGAL_HOLD}),
    S.DENIED: frozenset(),
    S.COMPLETED: frozenset(),
    S.ON_LEGAL_HOLD: frozenset(),  # it resumes to the state it was held in (`resume`), nothing else
}
OPEN_STATES = frozenset({S.RECEIVED, S.IDENTITY_VERIFIED, S.APPROVED, S.IN_PROGRESS, S.ON_LEGAL_HOLD})
ACTIVE_STATES = frozenset({S.IDENTITY_VERIFIED, S.APPROVED, S.IN_PROGRESS})  # the clock is reminded about

# What a rectification may correct: the patron record's personal fields, validated exactly like a patron
# update; the record's status is the institution's, not a correction.
Corrections = create_model(
    "Corrections",
    __config__=ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1}),
    **{name: (info.annotation, info) for name, info in PatronUpdate.model_fields.items() if name != "status"},
)


class Decision(enum.StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class QueueView(enum.StrEnum):
    OPEN = "open"  # everything not yet completed or denied
    OVERDUE = "overdue"
    ON_LEGAL_HOLD = "on_legal_hold"
    CLOSED = "closed"  # completed or denied
    ALL = "all"


class RequestSummary(BaseModel):
    """A request as the queue (and the API) shows it: kind, state, deadlines; no personal values."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    kind: RequestKind
    channel: RequestChannel
    state: RequestState
    patron_id: UUID
    objection_scope: str | None
    correction_fields: list[str] | None
    inquiry_id: UUID | None
    # Set when one form's address is on file for several patrons: the form made one request per patron, all
    # sharing this id and confirmed by one code. The officer decides which patron(s) asked: approve theirs,
    # deny the others (the reason goes to that same address).
    shared_address_group: UUID | None = None
    received_at: datetime
    due_at: datetime
    days_remaining: int | None
    overdue: bool
    verified_at: datetime | None
    verification: Verification | None
    approval_id: UUID | None
    decided_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    outcome_id: UUID | None
    held_from: RequestState | None
    held_at: datetime | None
    held_until: datetime | None
    reminded_at: datetime | None
    escalated_at: datetime | None


@dataclass(frozen=True)
class RequestText:
    """What is sealed in the row, opened for a privacy officer (a read of personal data, audited)."""

    corrections: dict[str, Any] | None
    decision_reason: str | None
    hold_reason: str | None


@dataclass(frozen=True)
class Policy:
    respond_within_days: int
    remind_before_days: int
    default: bool


# -- receiving -------------------------------------------------------------------------------


def register_own(
    session: TenantSession,
    actor: Principal,
    kind: RequestKind,
    *,
    objection_scope: str | None = None,
    corrections: dict[str, Any] | None = None,
) -> PrivacyRequest:
    """A signed-in patron asks about their own data: their sign-in verified who they are."""
    authorize(actor, Permission.SELF_SERVICE)
    account = session.get(Account, (session.tenant_id, actor.id)) if actor.kind is PrincipalKind.ACCOUNT else None
    if account is None or account.kind is not AccountKind.PATRON or account.patron_id is None:
        raise Forbidden("only a patron signed in to an account linked to their patron record asks this way")
    return receive(
        session,
        actor,
        RequestChannel.PATRON,
        account.patron_id,
        kind,
        objection_scope=objection_scope,
        corrections=corrections,
        verified=Verification.SIGNED_IN,
    )


def register_for_patron(
    session: TenantSession,
    actor: Principal,
    patron_id: UUID,
    kind: RequestKind,
    *,
    objection_scope: str | None = None,
    corrections: dict[str, Any] | None = None,
) -> PrivacyRequest:
    """Staff take a request on a patron's behalf, having seen proof of who the patron is."""
    authorize(actor, Permission.PRIVACY_REQUESTS_REGISTER)
    _institution_only(actor, "register a request on a patron's behalf")
    if session.get(Patron, (session.tenant_id, patron_id)) is None:
        raise NotFound(f"no patron {patron_id}")
    return receive(
        session,
        actor,
        RequestChannel.STAFF,
        patron_id,
        kind,
        objection_scope=objection_scope,
        corrections=corrections,
        verified=Verification.STAFF,
    )


def receive(
    session: TenantSession,
    actor: Principal | None,
    channel: RequestChannel,
    patron_id: UUID,
    kind: RequestKind,
    *,
    objection_scope: str | None = None,
    corrections: dict[str, Any] | None = None,
    verified: Verification | None = None,
    inquiry_id: UUID | None = None,
    shared_address_group: UUID | None = None,
) -> PrivacyRequest:
    """Put a request in the institution's queue (received), verified at once when the channel proves who asks.

    `shared_address_group`: the form's id when its address is on file for several patrons, one request each."""
    kind = RequestKind(kind)
    scope, changes = checked_details(kind, objection_scope, corrections)
    request = PrivacyRequest(
        tenant_id=session.tenant_id,
        id=uuid4(),
        kind=kind.value,
        channel=RequestChannel(channel).value,
        patron_id=patron_id,
        registered_by=actor.id if actor is not None else None,
        inquiry_id=inquiry_id,
        shared_address_group=shared_address_group,
        objection_scope=scope,
        correction_fields=sorted(changes) if changes is not None else None,
        state=S.RECEIVED.value,
    )
    if changes is not None:
        request.corrections = _seal_corrections(session, request, changes)
    now = db_now(session)
    request.received_at = now
    request.due_at = now + timedelta(days=policy_of(session).respond_within_days)
    session.add(request)
    session.flush()
    details = {
        "kind": kind.value,
        "channel": request.channel,
        "patron_id": patron_id,
        "due_at": request.due_at.isoformat(),
        "objection_scope": scope,
        "correction_fields": request.correction_fields,
        "inquiry_id": inquiry_id,
    }
    if shared_address_group is not None:
        details["shared_address_group"] = shared_address_group
    audit.record(session, Action.PRIVACY_REQUEST_RECEIVED, (TARGET, request.id), actor=actor, details=details)
    if verified is not None:
        verify_identity(session, actor, request, verified)
    return request


def checked_details(
    kind: RequestKind, objection_scope: str | None, corrections: dict[str, Any] | None
) -> tuple[str | None, dict[str, Any] | None]:
    """The scope an objection needs and the corrections a rectification needs, checked; nothing else may come."""
    if kind is RequestKind.OBJECTION:
        if objection_scope is None or not re.match(OBJECTION_SCOPE, objection_scope):
            raise InvalidInput('objection_scope: "third_party_disclosure" or "purpose:<name>" (a-z, 0-9 and _)')
    elif objection_scope is not None:
        raise InvalidInput("objection_scope: only an objection has a scope")
    if kind is not RequestKind.RECTIFICATION:
        if corrections is not None:
            raise InvalidInput("corrections: only a rectification carries corrections")
        return objection_scope, None
    if not corrections:
        raise InvalidInput("corrections: a rectification names at least one field of the patron record and its value")
    try:
        checked = Corrections.model_validate(corrections)
    except ValidationError as exc:
        # Field names only: the values may be personal and error texts end up in logs.
        fields = sorted({str(error["loc"][0]) for error in exc.errors() if error.get("loc")})
        raise InvalidInput(f"corrections: not valid for the patron record ({', '.join(fields) or 'fields'})") from None
    changes = checked.model_dump(mode="json", exclude_unset=True)
    for name, value in changes.items():
        if value is None and not Patron.__table__.c[name].nullable:
            raise InvalidInput(f"corrections: {name} may be corrected but not removed")
    check_fields(changes)  # no payment or bank data, even in a correction
    return None, changes


def verify_identity(
    session: TenantSession, actor: Principal | None, request: PrivacyRequest, how: Verification
) -> None:
    _move(session, request, S.IDENTITY_VERIFIED)
    request.verified_at, request.verification = db_now(session), Verification(how).value
    audit.record(
        session, Action.PRIVACY_REQUEST_VERIFIED, (TARGET, request.id), actor=actor, details={"method": how.value}
    )


# -- deciding --------------------------------------------------------------------------------


def decide(
    session: TenantSession, actor: Principal, request_id: UUID, decision: Decision, reason: str | None = None
) -> PrivacyRequest:
    """Approve or deny a verified request. A staff-initiated erasure is not approved here: approving it
    asks a second officer (access/approvals/service.py), and the request waits for that approval."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    _institution_only(actor, "decide a data-subject request")
    request = _locked(session, request_id)
    decision = Decision(decision)
    target = S.APPROVED if decision is Decision.APPROVE else S.DENIED
    _check_move(request, target)
    if decision is Decision.DENY:
        if not reason or not reason.strip():
            raise InvalidInput("reason: a denial says why; the patron is entitled to know")
        check_fields({"reason": reason})
        request.decision_reason = _seal(session, request.id, "decision_reason", reason)
        told = request_notices.tell_refused(session, request, reason)
        details = {"kind": request.kind, "patron_told": told}
        _decided(session, actor, request, S.DENIED, Action.PRIVACY_REQUEST_DENIED, details)
        return request
    if needs_second_officer(request):
        waiting = _pending_approval(session, request)
        if waiting is not None:
            raise Conflict(f"this erasure already waits for a second officer's approval ({waiting.id})")
        asked = approvals.ask(session, actor, SensitiveAction.APPROVE_ERASURE_REQUEST, {"request_id": str(request.id)})
        request.approval_id = asked.id
        return request
    _decided(session, actor, request, S.APPROVED, Action.PRIVACY_REQUEST_APPROVED, {"kind": request.kind})
    return request


def needs_second_officer(request: PrivacyRequest) -> bool:
    return request.kind == RequestKind.ERASURE and request.channel == RequestChannel.STAFF


def checked_erasure_params(session: TenantSession, params: dict) -> dict:
    """access/approvals/service.py asks this when an officer asks a colleague to approve an erasure request."""
    try:
        request_id = UUID(str(params.get("request_id")))
    except ValueError:
        raise InvalidInput("request_id: the id of a data-subject request") from None
    request = _get(session, request_id)
    if not needs_second_officer(request):
        raise InvalidInput("only an erasure registered by staff needs a second officer's approval; decide it directly")
    _check_move(request, S.APPROVED)
    return {"request_id": str(request.id)}


def approved_by_checker(session: TenantSession, approver: Principal, approval: ApprovalRequest) -> None:
    """The second officer approved (access/approvals/service.py calls this): the erasure request is approved."""
    _institution_only(approver, "approve an erasure")
    request = _locked(session, UUID(approval.params["request_id"]))
    if tokens.recorded_as(session, approver, request.registered_by):  # the same person, through any credential
        raise SegregationOfDutiesError(
            "the one who registered the erasure cannot also approve it: another officer must"
        )
    if request.approval_id != approval.id:
        raise Conflict("this approval is not the one the request waits for; ask again")
    _check_move(request, S.APPROVED)
    details = {"kind": request.kind, "approval_id": approval.id, "asked_by": approval.requested_by}
    _decided(session, approver, request, S.APPROVED, Action.PRIVACY_REQUEST_APPROVED, details)


def _decided(
    session: TenantSession, actor: Principal, request: PrivacyRequest, to: RequestState, action: Action, details: dict
) -> None:
    _move(session, request, to)
    request.decided_by, request.decided_at = actor.id, db_now(session)
    audit.record(session, action, (TARGET, request.id), actor=actor, details=details)


def _pending_approval(session: TenantSession, request: PrivacyRequest) -> ApprovalRequest | None:
    if request.approval_id is None:
        return None
    asked = session.get(ApprovalRequest, (session.tenant_id, request.approval_id))
    return asked if asked is not None and asked.status == "pending" and asked.expires_at > db_now(session) else None


# -- carrying out ----------------------------------------------------------------------------


def start(session: TenantSession, actor: Principal, request_id: UUID) -> PrivacyRequest:
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    _institution_only(actor, "carry out a data-subject request")
    request = _locked(session, request_id)
    _move(session, request, S.IN_PROGRESS)
    request.started_at = db_now(session)
    audit.record(
        session, Action.PRIVACY_REQUEST_STARTED, (TARGET, request.id), actor=actor, details={"kind": request.kind}
    )
    return request


def complete(session: TenantSession, actor: Principal, request_id: UUID) -> PrivacyRequest:
    """Carry the request out (privacy/requests/fulfilment.py) and close it, in one transaction."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    _institution_only(actor, "carry out a data-subject request")
    request = _locked(session, request_id)
    _check_move(request, S.COMPLETED)
    address = request_notices.address_on_file(session, request)  # before an erasure removes it
    return _carry_out(session, actor, request, address)


def _carry_out(
    session: TenantSession, actor: Principal, request: PrivacyRequest, address: str | None
) -> PrivacyRequest:
    corrections = _corrections(session, request)
    done = request_fulfilment.carry_out(session, actor, request, corrections)
    _move(session, request, S.COMPLETED)
    now = db_now(session)
    request.completed_at, request.completed_by, request.outcome_id = now, actor.id, done.outcome_id
    told = request_notices.tell_completed(session, request, address, done.told)
    details = {"kind": request.kind, "on_time": now <= request.due_at, "outcome_id": done.outcome_id, **done.details}
    details["patron_told"] = told
    audit.record(session, Action.PRIVACY_REQUEST_COMPLETED, (TARGET, request.id), actor=actor, details=details)
    faults.point("privacy_request.completing")
    return request


def finish_interrupted_erasures(db: Database) -> int:
    """Erasures whose run destroyed the patron's key and died before its commit, carried out again; how many.

    The shred commits in the keyring at once, and last (privacy/subjects/erasure.py), so such a request is
    still in progress over rows nobody can read. Every step of the erasure can run again: this run deletes
    the rows and closes the request, as the platform's duty, so no half-erased patron waits for an officer
    to come back. A request whose patron's key is alive was not reached (or rolled back whole): the officer
    carries it out. The patron is not mailed: the address went with the key."""
    with platform_session(db) as session:
        tenant_ids = list(session.scalars(text("SELECT id FROM tenants ORDER BY created_at, id")))
    finished = 0
    for tenant_id in tenant_ids:
        with tenant_session(db, tenant_id) as session:
            waiting = session.scalars(
                select(PrivacyRequest)
                .where(PrivacyRequest.state == S.IN_PROGRESS.value, PrivacyRequest.kind == RequestKind.ERASURE.value)
                .with_for_update(skip_locked=True)
            ).all()
            for request in waiting:
                if request.patron_id is None or session.get(Patron, (tenant_id, request.patron_id)) is None:
                    continue
                if session.keyring.subject_key_stored(tenant_id, request.patron_id):
                    continue
                fields = {"tenant_id": str(tenant_id), "request_id": str(request.id)}
                try:
                    with session.begin_nested():
                        _carry_out(session, SYSTEM, request, None)
                except BookwardenError as exc:  # a legal hold placed since: it waits, as any erasure would
                    log.warning("privacy.erasure_finish_waits", error=exc.slug, **fields)
                    continue
                log.warning("privacy.erasure_finished_after_crash", **fields)
                finished += 1
    return finished


# -- legal holds -----------------------------------------------------------------------------


def hold(
    session: TenantSession, actor: Principal, request_id: UUID, reason: str, until: datetime | None = None
) -> PrivacyRequest:
    """Hold an open request for a legal reason (litigation, an authority's order) until lifted or `until`."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    _institution_only(actor, "hold a data-subject request")
    if not reason or not reason.strip():
        raise InvalidInput("reason: a legal hold says why (the case, the order)")
    check_fields({"reason": reason})
    request = _locked(session, request_id)
    now = db_now(session)
    if until is not None and until.tzinfo is None:
        raise InvalidInput("until: a time with its time zone")
    if until is not None and until <= now:
        raise Conflict(f"until: {until.isoformat()} has passed already; a hold ends in the future, or when lifted")
    held_from = RequestState(request.state)
    _check_move(request, S.ON_LEGAL_HOLD)
    request.held_from, request.held_by, request.held_at, request.held_until = held_from.value, actor.id, now, until
    request.hold_reason = _seal(session, request.id, "hold_reason", reason)
    _move(session, request, S.ON_LEGAL_HOLD)
    details = {"held_from": held_from.value, "until": until.isoformat() if until else None}
    audit.record(session, Action.PRIVACY_REQUEST_HELD, (TARGET, request.id), actor=actor, details=details)
    return request


def resume(session: TenantSession, actor: Principal, request_id: UUID) -> PrivacyRequest:
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    _institution_only(actor, "resume a data-subject request")
    return _resume(session, actor, _locked(session, request_id), "lifted")


def _resume(session: TenantSession, actor: Principal, request: PrivacyRequest, why: str) -> PrivacyRequest:
    if request.state != S.ON_LEGAL_HOLD:
        raise Conflict(f"request {request.id} is {request.state}, not on legal hold: there is nothing to resume")
    back, held_at = RequestState(request.held_from), request.held_at
    request.state = back.value
    request.held_from = request.held_by = request.held_at = request.held_until = None
    request.hold_reason = None
    details = {"resumed_to": back.value, "held_at": held_at.isoformat() if held_at else None, "why": why}
    audit.record(session, Action.PRIVACY_REQUEST_RESUMED, (TARGET, request.id), actor=actor, details=details)
    return request


# -- reading ---------------------------------------------------------------------------------


def queue(session: TenantSession, actor: Principal, view: QueueView = QueueView.OPEN) -> list[RequestSummary]:
    """The institution's queue, the most urgent first."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    view = QueueView(view)
    now = db_now(session)
    query = _query(session)
    if view is QueueView.OPEN:
        query = query.where(PrivacyRequest.state.in_([s.value for s in OPEN_STATES]))
    elif view is QueueView.OVERDUE:
        query = query.where(PrivacyRequest.state.in_([s.value for s in OPEN_STATES]), PrivacyRequest.due_at <= now)
    elif view is QueueView.ON_LEGAL_HOLD:
        query = query.where(PrivacyRequest.state == S.ON_LEGAL_HOLD.value)
    elif view is QueueView.CLOSED:
        query = query.where(PrivacyRequest.state.in_([S.COMPLETED.value, S.DENIED.value]))
    found = [summary(r, now) for r in session.scalars(query.order_by(PrivacyRequest.due_at).limit(LIST_LIMIT))]
    details = {"view": view.value, "count": len(found), "ids": [r.id for r in found]}
    audit.record(session, Action.PRIVACY_REQUEST_LISTED, (TARGET, None), actor=actor, details=details)
    return found


def own_requests(session: TenantSession, actor: Principal) -> list[RequestSummary]:
    """The signed-in patron's own requests and where each stands."""
    authorize(actor, Permission.SELF_SERVICE)
    account = session.get(Account, (session.tenant_id, actor.id)) if actor.kind is PrincipalKind.ACCOUNT else None
    if account is None or account.kind is not AccountKind.PATRON or account.patron_id is None:
        raise Forbidden("only a patron signed in to an account linked to their patron record reads their requests")
    now = db_now(session)
    query = _query(session).where(PrivacyRequest.patron_id == account.patron_id)
    found = [summary(r, now) for r in session.scalars(query.order_by(PrivacyRequest.received_at.desc()).limit(100))]
    details = {"view": "own", "count": len(found), "ids": [r.id for r in found]}
    audit.record(session, Action.PRIVACY_REQUEST_LISTED, (TARGET, None), actor=actor, details=details)
    return found


def read(
    session: TenantSession, actor: Principal, request_id: UUID, *, opened: bool = True
) -> tuple[RequestSummary, RequestText | None]:
    """One request; with `opened`, what is sealed in it (corrections, reasons) too."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    request = _get(session, request_id)
    text_ = None
    if opened:
        text_ = RequestText(
            corrections=_corrections(session, request),
            decision_reason=_unseal(session, request, "decision_reason"),
            hold_reason=_unseal(session, request, "hold_reason"),
        )
    details = {"opened": opened, "patron_id": request.patron_id}
    audit.record(session, Action.PRIVACY_REQUEST_VIEWED, (TARGET, request.id), actor=actor, details=details)
    return summary(request, db_now(session)), text_


def summary_of(session: TenantSession, request_id: UUID) -> RequestSummary:
    """Where one request stands, to answer the write that just changed it (that write is audited)."""
    return summary(_get(session, request_id), db_now(session))


def summary(request: PrivacyRequest, now: datetime) -> RequestSummary:
    open_ = RequestState(request.state) in OPEN_STATES
    return RequestSummary(
        id=request.id,
        kind=RequestKind(request.kind),
        channel=RequestChannel(request.channel),
        state=RequestState(request.state),
        patron_id=request.patron_id,
        objection_scope=request.objection_scope,
        correction_fields=request.correction_fields,
        inquiry_id=request.inquiry_id,
        shared_address_group=request.shared_address_group,
        received_at=request.received_at,
        due_at=request.due_at,
        days_remaining=math.ceil((request.due_at - now).total_seconds() / 86400) if open_ else None,
        overdue=open_ and request.due_at <= now,
        verified_at=request.verified_at,
        verification=Verification(request.verification) if request.verification else None,
        approval_id=request.approval_id,
        decided_at=request.decided_at,
        started_at=request.started_at,
        completed_at=request.completed_at,
        outcome_id=request.outcome_id,
        held_from=RequestState(request.held_from) if request.held_from else None,
        held_at=request.held_at,
        held_until=request.held_until,
        reminded_at=request.reminded_at,
        escalated_at=request.escalated_at,
    )


# -- the institution's deadline --------------------------------------------------------------


def policy_of(session: TenantSession) -> Policy:
    row = session.get(RequestPolicy, session.tenant_id)
    if row is None:
        return Policy(RESPOND_WITHIN_DAYS, REMIND_BEFORE_DAYS, default=True)
    return Policy(row.respond_within_days, row.remind_before_days, default=False)


def read_policy(session: TenantSession, actor: Principal) -> Policy:
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    found = policy_of(session)
    audit.record(session, Action.PRIVACY_REQUEST_POLICY_VIEWED, actor=actor, details={"default": found.default})
    return found


def set_policy(session: TenantSession, actor: Principal, respond_within_days: int, remind_before_days: int) -> Policy:
    """Requests received from now on are due this many days after receipt; open ones keep their due date."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    _institution_only(actor, "set the institution's request deadline")
    if not 1 <= respond_within_days <= 90:
        raise InvalidInput("respond_within_days: from 1 to 90 days")
    if not 0 <= remind_before_days <= 30:
        # As long as the deadline or longer: officers are reminded as soon as a request is verified.
        raise InvalidInput("remind_before_days: from 0 to 30 days")
    before = policy_of(session)
    row = session.get(RequestPolicy, session.tenant_id) or RequestPolicy(tenant_id=session.tenant_id)
    row.respond_within_days, row.remind_before_days = respond_within_days, remind_before_days
    row.updated_by, row.updated_at = actor.id, db_now(session)
    session.add(row)
    session.flush()
    details = {
        "respond_within_days": respond_within_days,
        "remind_before_days": remind_before_days,
        "previous_respond_within_days": before.respond_within_days,
        "previous_remind_before_days": before.remind_before_days,
    }
    audit.record(session, Action.PRIVACY_REQUEST_POLICY_CHANGED, actor=actor, details=details)
    return policy_of(session)


# -- the deadline job ------------------------------------------------------------------------


@dataclass
class DeadlineReport:
    reminded: int = 0
    escalated: int = 0
    resumed: int = 0
    lapsed: int = 0


def process_deadlines(db: Database, batch: int = DEADLINES_BATCH) -> DeadlineReport:
    """Remind before the due date, escalate once it has passed, resume holds whose end has passed.

    Idempotent: each reminder and escalation is flagged on the request in the transaction that queues
    its mail, and a request another run holds is skipped (SKIP LOCKED), so none goes out twice.
    """
    with platform_session(db) as session:
        due = session.execute(
            text("SELECT tenant_id, request_id FROM bookwarden_privacy_requests_due(:n)"), {"n": batch}
        ).all()
    per_tenant: dict[UUID, list[UUID]] = defaultdict(list)
    for tenant_id, request_id in due:
        per_tenant[tenant_id].append(request_id)
    report = DeadlineReport()
    for tenant_id, request_ids in per_tenant.items():
        with tenant_session(db, tenant_id) as session:
            recipients = EscalationRecipients(session)
            policy = policy_of(session)
            for request_id in request_ids:
                _settle(session, request_id, report, recipients, policy)
    return report


def _settle(
    session: TenantSession, request_id: UUID, report: DeadlineReport, recipients: EscalationRecipients, policy: Policy
) -> None:
    request = session.scalars(
        select(PrivacyRequest)
        .where(PrivacyRequest.tenant_id == session.tenant_id, PrivacyRequest.id == request_id)
        .with_for_update(skip_locked=True)
    ).first()
    if request is None:
        return  # another run holds it
    now = db_now(session)
    if (
        request.state == S.RECEIVED
        and request.channel == RequestChannel.FORM
        and request.received_at <= now - UNCONFIRMED
    ):
        # Nobody confirmed it with the code mailed to the address on file (long expired): nobody asked.
        session.delete(request)
        session.flush()
        details = {"kind": request.kind, "received_at": request.received_at.isoformat()}
        audit.record(session, Action.PRIVACY_REQUEST_LAPSED, (TARGET, request.id), actor=SYSTEM, details=details)
        report.lapsed += 1
        return
    if request.state == S.ON_LEGAL_HOLD and request.held_until is not None and request.held_until <= now:
        _resume(session, SYSTEM, request, "hold ended")
        report.resumed += 1
    if RequestState(request.state) not in ACTIVE_STATES:
        return
    if request.escalated_at is None and request.due_at <= now:
        request.escalated_at = now
        escalation = raise_escalation(session, SubjectKind.PRIVACY_REQUEST, request.id, Level.OVERDUE, request.due_at)
        _notify(session, request, recipients, now, overdue=True, dpo_escalation=escalation)
        report.escalated += 1
    elif (
        request.reminded_at is None
        and request.due_at - timedelta(days=policy.remind_before_days) <= now < request.due_at
    ):
        request.reminded_at = now
        _notify(session, request, recipients, now, overdue=False)
        report.reminded += 1


def _notify(
    session: TenantSession,
    request: PrivacyRequest,
    recipients: EscalationRecipients,
    now: datetime,
    *,
    overdue: bool,
    dpo_escalation: UUID | None = None,
) -> None:
    handlers, addresses = recipients.handlers, recipients.addresses
    institution = institution_name(session)
    days = math.ceil((request.due_at - now).total_seconds() / 86400)
    level = "overdue" if overdue else "due soon"
    for address in addresses:
        queue_mail(
            session,
            to=address,
            subject=f"[{institution}] data-subject request {level} (reference {request.id})",
            template="privacy_request_deadline.txt",
            context={
                "institution": institution,
                "level": level,
                "overdue": overdue,
                "reference": str(request.id),
                "kind": request.kind,
                "state": request.state,
                "received": mail_time(request.received_at),
                "due": mail_time(request.due_at),
                "days_remaining": days,
            },
            category=MailCategory.SERVICE,
        )
    if not addresses:
        log.warning("privacy request deadline has no recipient", tenant_id=str(session.tenant_id), level=level)
    action = Action.PRIVACY_REQUEST_ESCALATED if overdue else Action.PRIVACY_REQUEST_REMINDED
    details = {
        "due_at": request.due_at.isoformat(),
        "days_remaining": days,
        "notified_accounts": [account_id for account_id, _ in handlers],
        "security_contacts_notified": len(addresses) if not handlers else 0,
    }
    if dpo_escalation is not None:
        details["dpo_escalation"] = str(dpo_escalation)
    audit.record(session, action, (TARGET, request.id), actor=SYSTEM, details=details)


# -- helpers ---------------------------------------------------------------------------------


def _institution_only(actor: Principal, what: str) -> None:
    """The institution (controller) decides and carries out; operator staff (processor) never do, grant or not."""
    if actor.is_operator or actor.grant_id is not None or actor.kind in PLATFORM_KINDS:
        raise Forbidden(
            f"only the institution's own staff {what}: the institution is the controller of its patrons' data; "
            "operator staff host it and cannot decide or carry out data-subject requests"
        )


def _check_move(request: PrivacyRequest, to: RequestState) -> None:
    now = RequestState(request.state)
    if to not in ALLOWED[now]:
        allowed = ", ".join(sorted(ALLOWED[now])) or ("resume" if now is S.ON_LEGAL_HOLD else "nothing: it is closed")
        raise Conflict(
            f"request {request.id} is {now.value}: it cannot become {to.value} (from {now.value}: {allowed})"
        )


def _move(session: TenantSession, request: PrivacyRequest, to: RequestState) -> None:
    _check_move(request, to)
    request.state = to.value
    session.flush()


def _query(session: TenantSession) -> Select:
    return select(PrivacyRequest).where(PrivacyRequest.tenant_id == session.tenant_id)


def _get(session: TenantSession, request_id: UUID) -> PrivacyRequest:
    request = session.scalars(_query(session).where(PrivacyRequest.id == request_id)).first()
    if request is None:
        raise NotFound(f"no data-subject request {request_id}")
    return request


def _locked(session: TenantSession, request_id: UUID) -> PrivacyRequest:
    request = session.scalars(_query(session).where(PrivacyRequest.id == request_id).with_for_update()).first()
    if request is None:
        raise NotFound(f"no data-subject request {request_id}")
    return request


def _seal(session: TenantSession, request_id: UUID, column: str, value: str) -> bytes:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return encrypt_field(key, session.tenant_id, TABLE, column, request_id, value)


def _seal_corrections(session: TenantSession, request: PrivacyRequest, changes: dict[str, Any]) -> bytes:
    # Corrections are the patron's own values, so they are sealed under the patron's subject key:
    # an erasure shreds that key and the request keeps only which fields were corrected.
    key = session.keyring.subject_key(session.tenant_id, request.patron_id)
    return encrypt_field(key, session.tenant_id, TABLE, "corrections", request.id, json.dumps(changes, sort_keys=True))


def _corrections(session: TenantSession, request: PrivacyRequest) -> dict[str, Any] | None:
    """The corrections a rectification carries; None when there are none or the patron was erased."""
    if request.corrections is None:
        return None
    try:
        key = session.keyring.subject_key(session.tenant_id, request.patron_id)
    except KeyDestroyed:
        return None
    return json.loads(decrypt_field(key, session.tenant_id, TABLE, "corrections", request.id, request.corrections))


def _unseal(session: TenantSession, request: PrivacyRequest, column: str) -> str | None:
    key = session.keyring.tenant_own_key(session.tenant_id)
    return decrypt_field(key, session.tenant_id, TABLE, column, request.id, getattr(request, column))


# -- the period ------------------------------------------------------------------------------


def forget_closed(session: TenantSession, cutoff: datetime, limit: int) -> list[UUID]:
    """Delete at most `limit` requests closed before `cutoff` (completed then, or denied then), with their
    one-time codes (foreign-key cascade); their ids. Open and held requests stay whatever their age."""
    requests = PrivacyRequest.__table__
    closed_at = func.coalesce(requests.c.completed_at, requests.c.decided_at)
    chosen = (
        select(requests.c.id)
        .where(
            requests.c.tenant_id == session.tenant_id,
            requests.c.state.in_((S.COMPLETED.value, S.DENIED.value)),
            closed_at < cutoff,
            requests.c.patron_id.not_in(patrons_held_entirely()),
        )
        .order_by(requests.c.id)
        .limit(limit)
    )
    removed = session.scalars(
        delete(requests)
        .where(requests.c.tenant_id == session.tenant_id, requests.c.id.in_(chosen.scalar_subquery()))
        .returning(requests.c.id)
    )
    return list(removed)
