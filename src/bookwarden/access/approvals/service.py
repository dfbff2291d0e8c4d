"""Maker-checker: the one who asks for a sensitive action cannot be the one who approves it.

A request names the action and its exact parameters; another holder of the permission the
action needs approves it, and the action is carried out at that moment, under that approval.
Sensitive now: granting an administrative role, changing a password policy, configuring or
removing institutional sign-on (identity/saml/config.py), a bulk export of patrons
(library/export.py: approving carries nothing out, it lets the asker download once), approving a
staff-initiated erasure request (privacy/requests/service.py: approving moves the request to approved),
changing how long a category of personal data is kept (privacy/retention/service.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import select

from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.access.authorize import authorize
from bookwarden.access.permissions import ADMIN_ROLES, Permission
from bookwarden.access.principal import Principal
from bookwarden.access.roles import service as access
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.errors import Conflict, InvalidInput, NotFound, SegregationOfDutiesError
from bookwarden.db.session import TenantSession
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.passwords import PasswordPolicy, RoleClass

PERMISSION = {
    SensitiveAction.GRANT_ADMIN_ROLE: Permission.ROLES_ASSIGN,
    SensitiveAction.CHANGE_PASSWORD_POLICY: Permission.POLICY_MANAGE,
    SensitiveAction.CONFIGURE_SSO: Permission.SSO_MANAGE,
    SensitiveAction.REMOVE_SSO: Permission.SSO_MANAGE,
    SensitiveAction.EXPORT_PATRONS: Permission.PATRONS_EXPORT,
    SensitiveAction.CHANGE_RETENTION_POLICY: Permission.PRIVACY_RETENTION_MANAGE,
    SensitiveAction.APPROVE_ERASURE_REQUEST: Permission.PRIVACY_ERASURE_APPROVE,
}
EXPORT_FORMATS = ("jsonl", "csv")
SIGN_ON = frozenset({SensitiveAction.CONFIGURE_SSO, SensitiveAction.REMOVE_SSO})
KEEP_OPEN = timedelta(days=7)


def ask(session: TenantSession, actor: Principal, action: SensitiveAction, params: dict) -> ApprovalRequest:
    """Record the request after checking now what would make it fail (so nobody approves a dud)."""
    authorize(actor, PERMISSION[action])
    params = _checked(session, action, params)
    request = ApprovalRequest(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        action=action.value,
        params=params,
        requested_by=actor.id,
        expires_at=datetime.now(UTC) + KEEP_OPEN,
        status="pending",
    )
    session.add(request)
    session.flush()
    _record(session, Action.APPROVAL_REQUESTED, request)
    return request


def _record(session: TenantSession, action: Action, request: ApprovalRequest) -> None:
    # The parameters are ids, role names, policy numbers and sign-on settings: nothing personal. A sign-on
    # change's `content` (kilobytes of IdP metadata) is recorded by its digest, content_sha256, which binds it.
    params = {key: value for key, value in request.params.items() if key != "content"}
    details = {"sensitive_action": request.action, "requested_by": request.requested_by, **params}
    record(session, action, ("approval", request.id), details=details)


def approve(session: TenantSession, approver: Principal, request_id: UUID) -> ApprovalRequest:
    request = _pending(session, request_id)
    authorize(approver, PERMISSION[SensitiveAction(request.action)])
    if approver.id == request.requested_by:
        raise SegregationOfDutiesError("the one who asked cannot approve: another holder of the permission must")
    request.status, request.decided_by, request.decided_at = "approved", approver.id, datetime.now(UTC)
    session.flush()
    _record(session, Action.APPROVAL_APPROVED, request)
    _carry_out(session, approver, request)
    return request


def reject(session: TenantSession, approver: Principal, request_id: UUID) -> ApprovalRequest:
    request = _pending(session, request_id)
    authorize(approver, PERMISSION[SensitiveAction(request.action)])
    if approver.id == request.requested_by:
        # Said here, not left to the database's checker_is_not_maker constraint (which would be a 500).
        raise SegregationOfDutiesError(
            "the one who asked cannot decide the request: another holder of the permission rejects it, "
            f"or it lapses after {KEEP_OPEN.days} days"
        )
    request.status, request.decided_by, request.decided_at = "rejected", approver.id, datetime.now(UTC)
    session.flush()
    _record(session, Action.APPROVAL_REJECTED, request)
    return request


def pending(session: TenantSession) -> list[ApprovalRequest]:
    query = select(ApprovalRequest).where(
        ApprovalRequest.tenant_id == session.tenant_id, ApprovalRequest.status == "pending"
    )
    found = list(session.scalars(query.order_by(ApprovalRequest.requested_at).limit(500)))
    ids = [request.id for request in found]
    record(session, Action.APPROVAL_LISTED, ("approval", None), details={"ids": ids, "count": len(ids)})
    return found


def _carry_out(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    params = dict(request.params)
    if request.action in SIGN_ON:
        _sign_on().carry_out(session, approver, request)
    elif request.action == SensitiveAction.EXPORT_PATRONS:
        pass  # the asker downloads it later, once, under this approval (library/export.py)
    elif request.action == SensitiveAction.CHANGE_RETENTION_POLICY:
        _retention().set_period(session, approver, params["category"], params["keep_days"], approval=request)
    elif request.action == SensitiveAction.APPROVE_ERASURE_REQUEST:
        _privacy_requests().approved_by_checker(session, approver, request)
    elif request.action == SensitiveAction.GRANT_ADMIN_ROLE:
        access.grant_role(session, approver, UUID(params["account_id"]), params["role"], approval=request)
    else:
        role_class = RoleClass(params.pop("role_class"))
        accounts.set_password_policy(session, approver, role_class, approval=request, **params)


def _checked(session: TenantSession, action: SensitiveAction, params: dict) -> dict:
    if action in SIGN_ON:
        return _sign_on().checked_params(session, action, params)
    if action is SensitiveAction.GRANT_ADMIN_ROLE:
        if params.get("role") not in {r.value for r in ADMIN_ROLES}:
            raise InvalidInput(f"role: only {', '.join(sorted(ADMIN_ROLES))} need an approval; grant others directly")
        account = accounts.get_account(session, UUID(str(params["account_id"])))
        return {"account_id": str(account.id), "role": str(params["role"])}
    if action is SensitiveAction.APPROVE_ERASURE_REQUEST:
        return _privacy_requests().checked_erasure_params(session, params)
    if action is SensitiveAction.CHANGE_RETENTION_POLICY:
        return _retention().checked_params(params)
    if action is SensitiveAction.EXPORT_PATRONS:
        if params.get("format") not in EXPORT_FORMATS:
            raise InvalidInput(f"format: one of {', '.join(EXPORT_FORMATS)}")
        return {"format": params["format"]}
    role_class = RoleClass(params["role_class"])
    settings = {k: params.get(k) for k in ("min_length", "max_length", "history", "expiry_days") if k in params}
    policy = PasswordPolicy.for_role(role_class, **settings)  # a setting below a floor is refused now
    return {
        "role_class": role_class.value,
        "min_length": policy.min_length,
        "max_length": policy.max_length,
        "history": policy.history,
        "expiry_days": policy.expiry_days,
    }


def _pending(session: TenantSession, request_id: UUID) -> ApprovalRequest:
    request = session.get(ApprovalRequest, (session.tenant_id, request_id))
    if request is None:
        raise NotFound(f"no approval request {request_id}")
    if request.status != "pending":
        raise Conflict(f"the request is {request.status} already")
    if request.expires_at <= datetime.now(UTC):
        raise Conflict("the request has expired; ask again")
    return request


def _privacy_requests():
    # Imported when used: privacy/requests/service.py asks through this module.
    from bookwarden.privacy.requests import service as requests

    return requests


def _retention():
    # Imported when used: privacy/retention/service.py asks through this module.
    from bookwarden.privacy.retention import service as retention

    return retention


def _sign_on():
    # Imported when used: identity/saml/config.py asks through this module.
    from bookwarden.identity.saml import config as saml_config

    return saml_config
