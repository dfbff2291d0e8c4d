"""Maker-checker: the one who asks for a sensitive action cannot be the one who approves it.

"The one" is a person, not a credential (core/principal.py): an account asking through its session
cannot approve through one of its API tokens, nor a token approve what its owner (or another token of
the same owner) asked. The request keeps the asker's person (`requested_by_person`) beside the asking
credential, and the database refuses a decision by the same person (checker_is_not_maker_person) as it
refuses one by the same credential. A service token (no owner) is a party of its own.

A request names the action and its exact parameters; another holder of the permission the
action needs approves it, and the action is carried out at that moment, under that approval.
Each area declares its sensitive actions in its own `approvals.py` (access/approvals/kinds.py):
granting a role, or defining a custom role, that carries administrative permissions
(identity/approvals.py), changing a password policy (identity/accounts/approvals.py),
configuring or removing institutional sign-on (identity/saml/approvals.py), a bulk export of
patrons (library/approvals.py: approving carries nothing out, it lets the asker download once),
approving a staff-initiated erasure request (privacy/requests/approvals.py), changing how long a
category of personal data is kept (privacy/retention/approvals.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import select

from bookwarden.access.approvals.kinds import kind_for
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession

KEEP_OPEN = timedelta(days=7)


def ask(session: TenantSession, actor: Principal, action: SensitiveAction, params: dict) -> ApprovalRequest:
    """Record the request after checking now what would make it fail (so nobody approves a dud)."""
    kind = kind_for(action)
    authorize(actor, kind.permission)
    params = kind.check(session, params)
    request = ApprovalRequest(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        action=action.value,
        params=params,
        requested_by=actor.id,
        requested_by_person=actor.person,
        expires_at=datetime.now(UTC) + KEEP_OPEN,
        status="pending",
    )
    session.add(request)
    session.flush()
    _record(session, Action.APPROVAL_REQUESTED, request)
    return request


def _record(session: TenantSession, action: Action, request: ApprovalRequest) -> None:
    # The parameters are ids, role names, permissions, policy numbers and sign-on settings: nothing personal. A
    # sign-on change's `content` (kilobytes of IdP metadata) is recorded by its digest, content_sha256, which
    # binds it; a role's `description` is free text an administrator typed, kept out of the trail as
    # role.created keeps it out.
    params = {key: value for key, value in request.params.items() if key not in ("content", "description")}
    details = {"sensitive_action": request.action, "requested_by": request.requested_by, **params}
    if request.requested_by_person not in (None, request.requested_by):  # asked through a token: name its owner
        details["requested_by_person"] = request.requested_by_person
    record(session, action, ("approval", request.id), details=details)


def approve(session: TenantSession, approver: Principal, request_id: UUID) -> ApprovalRequest:
    """Approve and carry out: the request's own kind names the permission that decides it (the queue's
    route asks accounts.read to see it; a kind's own route, a patron's deletion say, asks its own)."""
    request = _pending(session, request_id)
    kind = kind_for(request.action)
    authorize(approver, kind.permission)
    if _asked_by(approver, request):
        raise SegregationOfDutiesError(
            "the one who asked cannot approve, through any of their sessions or tokens: another holder of the "
            "permission must"
        )
    _decide(request, approver, "approved")
    session.flush()
    _record(session, Action.APPROVAL_APPROVED, request)
    faults.point("approvals.decided")
    kind.carry_out(session, approver, request)
    faults.point("approvals.carried_out")
    return request


def reject(session: TenantSession, approver: Principal, request_id: UUID) -> ApprovalRequest:
    request = _pending(session, request_id)
    authorize(approver, kind_for(request.action).permission)
    if _asked_by(approver, request):
        # Said here, not left to the database's checker_is_not_maker constraints (which would be a 500).
        raise SegregationOfDutiesError(
            "the one who asked cannot decide the request, through any of their sessions or tokens: another "
            f"holder of the permission rejects it, or it lapses after {KEEP_OPEN.days} days"
        )
    _decide(request, approver, "rejected")
    session.flush()
    _record(session, Action.APPROVAL_REJECTED, request)
    return request


def _asked_by(principal: Principal, request: ApprovalRequest) -> bool:
    """The asking credential itself, or its person through another credential. A request asked before
    migration 0025 has no person; a session's id is its person's, so `requested_by` still names it."""
    return principal.same_party(request.requested_by, request.requested_by_person)


def _decide(request: ApprovalRequest, approver: Principal, status: str) -> None:
    request.status, request.decided_by, request.decided_at = status, approver.id, datetime.now(UTC)
    request.decided_by_person = approver.person


def pending(session: TenantSession, actor: Principal) -> list[ApprovalRequest]:
    """Requests waiting for a second person; whoever may read accounts sees the queue (deciding one takes
    the permission of its own kind)."""
    authorize(actor, Permission.ACCOUNTS_READ)
    query = select(ApprovalRequest).where(
        ApprovalRequest.tenant_id == session.tenant_id, ApprovalRequest.status == "pending"
    )
    found = list(session.scalars(query.order_by(ApprovalRequest.requested_at).limit(500)))
    ids = [request.id for request in found]
    record(session, Action.APPROVAL_LISTED, ("approval", None), details={"ids": ids, "count": len(ids)})
    return found


def _pending(session: TenantSession, request_id: UUID) -> ApprovalRequest:
    request = session.get(ApprovalRequest, (session.tenant_id, request_id))
    if request is None:
        raise NotFound(f"no approval request {request_id}")
    if request.status != "pending":
        raise Conflict(f"the request is {request.status} already")
    if request.expires_at <= datetime.now(UTC):
        raise Conflict("the request has expired; ask again")
    return request
