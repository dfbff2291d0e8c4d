"""Operator access grants: time-bound, justified, approved, revocable, and the only way in.

An operator asks for a grant on one tenant (scope, justification, ticket, at most 8 hours); a
tenant admin approves it, or the CISO approves it as break-glass (flagged and notified to the
tenant at once). While approved and within its window, the grant turns the operator's
credential into a tenant principal limited to the grant's scope; outside it, the operator sees
nothing of the tenant. Grants end by themselves (a recurring job marks them and sends the notice).

Every step is recorded in the tenant's chain, and so is every use: each request an operator makes
through a grant records operator_grant.used, and every event of that request carries the grant id.

A grant's row, with the justification the operator wrote, goes 2 years after the grant ended (the
personal-data registry's period for staff activity; access/grants/jobs.py). The trail keeps every step
of it (operator, scope, ticket, window), never the justification.

People, not credentials: a grant keeps the operator account behind the credential that asked
(`requested_by_person`), and whoever decides it must be another person (the CISO cannot break glass
for a request they made through one of their tokens). Break-glass itself is never held by a token:
only an operator signed in with password and second factor (PrincipalKind.OPERATOR) can break glass,
and no operator token carries platform.grants.break_glass (identity/tokens/service.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import delete, func, select, text

from bookwarden.access.grants.models import GrantScope, GrantStatus, OperatorGrant
from bookwarden.access.roles.notices import EntitlementEvent, entitlement_changed
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import LIBRARY_READ, LIBRARY_WRITE, Permission
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.tenancy.service import get_tenant

MAX_DURATION = timedelta(hours=8)
CLOCK_SKEW = timedelta(minutes=5)
P = Permission
SCOPE_PERMISSIONS = {
    GrantScope.READ: LIBRARY_READ,
    GrantScope.READ_WRITE: LIBRARY_READ | LIBRARY_WRITE,
    # Handling, never deciding: approving an erasure or a request stays the institution's (privacy/requests).
    GrantScope.PRIVACY: frozenset(
        {
            P.PRIVACY_REQUESTS_HANDLE,
            P.PRIVACY_RECORDS_READ,
            P.PRIVACY_NOTICE_MANAGE,  # publishing the institution's notice on its behalf
            P.PRIVACY_DISCLOSURES_MANAGE,
            P.PRIVACY_RETENTION_MANAGE,
            P.REPORTS_PUBLISHERS,
            P.REPORTS_CATALOGUE_MANAGE,
            P.REPORTS_POLICY_MANAGE,
        }
    ),
    GrantScope.AUDIT: frozenset({P.AUDIT_READ, P.AUDIT_VERIFY}),
}
EXPIRE_JOB = "access.expire_grants"
FORGET_ENDED_JOB = "access.forget_ended_grants"
# The registry's "2 years after the grant ended" (privacy/registry.py STAFF_ACTIVITY; privacy/periods.py checks).
KEEP_AFTER_END = timedelta(days=730)
ENDED = (GrantStatus.DENIED.value, GrantStatus.REVOKED.value, GrantStatus.EXPIRED.value)


def _require_operator(principal: Principal) -> None:
    if principal.tenant_id is not None:
        raise Forbidden("only platform operator staff take part in operator grants this way")


def _require_signed_in_operator(principal: Principal) -> None:
    """An operator's own sign-in session, which exists only once its second factor passed; no token."""
    _require_operator(principal)
    if principal.kind is not PrincipalKind.OPERATOR:
        raise Forbidden(
            "break-glass is never held by a token: sign in as an operator with your password and second factor "
            "(POST /api/v1/operator/auth/login, then .../mfa) and break glass from that session"
        )


def request_grant(
    db: Database,
    operator: Principal,
    tenant_ref: UUID | str,
    *,
    scope: GrantScope,
    justification: str,
    ticket: str,
    duration: timedelta,
    starts_at: datetime | None = None,
) -> OperatorGrant:
    authorize(operator, Permission.PLATFORM_GRANTS_REQUEST)
    _require_operator(operator)
    now = datetime.now(UTC)
    starts_at = starts_at or now
    if len(justification) < 10 or not justification.strip():
        raise InvalidInput("justification: say why access is needed (at least 10 characters)")
    if not ticket.strip():
        raise InvalidInput("ticket: a ticket reference is required")
    if not timedelta(minutes=1) <= duration <= MAX_DURATION:
        raise InvalidInput("duration: between one minute and 8 hours")
    if starts_at < now - CLOCK_SKEW:
        raise InvalidInput("starts_at: a grant cannot start in the past")
    with platform_session(db) as session:
        tenant_id = get_tenant(session, tenant_ref).id
    with tenant_session(db, tenant_id) as session:
        grant = OperatorGrant(
            tenant_id=tenant_id,
            id=uuid.uuid4(),
            operator_id=operator.id,
            requested_by_person=operator.person,
            scope=GrantScope(scope).value,
            justification=justification.strip(),
            ticket=ticket.strip(),
            starts_at=starts_at,
            expires_at=starts_at + duration,
            status=GrantStatus.REQUESTED.value,
            break_glass=False,
        )
        session.add(grant)
        session.flush()
        _record(session, Action.GRANT_REQUESTED, grant)
        entitlement_changed(
            session, operator, EntitlementEvent.OPERATOR_GRANT_REQUESTED, f"operator {operator.id}", _describe(grant)
        )
        return grant


def approve_grant(session: TenantSession, actor: Principal, grant_id: UUID) -> OperatorGrant:
    """A tenant admin lets the operator in, for the window asked."""
    authorize(actor, Permission.OPERATOR_GRANTS_APPROVE)
    grant = _pending(session, grant_id)
    _decide(grant, actor, GrantStatus.APPROVED)
    _record(session, Action.GRANT_APPROVED, grant)
    entitlement_changed(
        session, actor, EntitlementEvent.OPERATOR_GRANT_APPROVED, f"operator {grant.operator_id}", _describe(grant)
    )
    return grant


def deny_grant(session: TenantSession, actor: Principal, grant_id: UUID) -> OperatorGrant:
    authorize(actor, Permission.OPERATOR_GRANTS_APPROVE)
    grant = _pending(session, grant_id)
    _decide(grant, actor, GrantStatus.DENIED)
    _record(session, Action.GRANT_REJECTED, grant)
    return grant


def break_glass(
    db: Database, ciso: Principal, tenant_ref: UUID | str, grant_id: UUID, *, reason: str | None = None
) -> OperatorGrant:
    """The CISO approves without the tenant, in an emergency: flagged, and the tenant is told at once.

    `reason` (the console page asks for it) is the CISO's word on the emergency: it goes into the notice the
    institution's security contacts receive, never into the trail (free text may name a person)."""
    authorize(ciso, Permission.PLATFORM_GRANTS_BREAK_GLASS)
    _require_signed_in_operator(ciso)
    if reason is not None and len(reason.strip()) < 10:
        raise InvalidInput("reason: say what emergency needs access without the institution (at least 10 characters)")
    with platform_session(db) as session:
        # An unknown institution is named as such, not as an unknown grant.
        tenant_id = get_tenant(session, tenant_ref).id
    with tenant_session(db, tenant_id) as session:
        grant = _pending(session, grant_id)
        if _asked_by(ciso, grant):
            raise SegregationOfDutiesError(
                "the CISO cannot break glass for their own request, asked through any of their sessions or tokens"
            )
        _decide(grant, ciso, GrantStatus.APPROVED)
        grant.break_glass = True
        _record(session, Action.GRANT_BREAK_GLASS, grant)
        entitlement_changed(
            session,
            ciso,
            EntitlementEvent.OPERATOR_GRANT_BREAK_GLASS,
            f"operator {grant.operator_id}",
            {
                **_describe(grant),
                "break_glass": "YES - approved by the platform CISO, not by you",
                **({"break-glass reason": reason.strip()} if reason is not None else {}),
            },
        )
        return grant


def revoke_grant(session: TenantSession, actor: Principal, grant_id: UUID) -> OperatorGrant:
    """The tenant admin, or the operator who holds it, ends a grant before its time."""
    grant = _get(session, grant_id)
    if not _asked_by(actor, grant):
        authorize(actor, Permission.OPERATOR_GRANTS_APPROVE)
    if grant.status not in (GrantStatus.REQUESTED, GrantStatus.APPROVED):
        raise Conflict(f"the grant is {grant.status} already")
    grant.status, grant.ended_at = GrantStatus.REVOKED.value, datetime.now(UTC)
    session.flush()
    _record(session, Action.GRANT_REVOKED, grant)
    return grant


def end_own_grant(db: Database, operator: Principal, tenant_id: UUID, grant_id: UUID) -> OperatorGrant:
    """An operator ends a grant they asked for, before its time (the operator console's "End now").

    The institution is named by the caller (the operator's own list shows it); a grant of another institution,
    or one another person asked for, is not found: an operator learns nothing of grants that are not theirs."""
    authorize(operator, Permission.PLATFORM_GRANTS_REQUEST)
    _require_operator(operator)
    with tenant_session(db, tenant_id) as session:
        grant = _get(session, grant_id)
        if not _asked_by(operator, grant):
            raise NotFound(f"no operator grant {grant_id}")
        return revoke_grant(session, operator, grant_id)


def open_grant(db: Database, operator: Principal, grant_id: UUID, *, tenant_id: UUID | None = None) -> Principal:
    """The tenant principal an approved, current grant gives its operator; Forbidden otherwise.

    The tenant comes from the grant row (found by a narrow definer function), never from the request.
    The console, whose commands name their institution, passes it as `tenant_id`: a grant for another
    institution is refused before any use is recorded.
    """
    _require_operator(operator)
    with platform_session(db) as session:
        found = session.execute(
            text("SELECT tenant_id, scope FROM bookwarden_resolve_operator_grant(:g, :o)"),
            {"g": grant_id, "o": operator.id},
        ).first()
    if found is None:
        raise Forbidden("no approved, current operator grant with this id for this operator")
    if tenant_id is not None and found.tenant_id != tenant_id:
        raise Forbidden(f"operator grant {grant_id} opens another institution, not {tenant_id}")
    acting = Principal(
        operator.kind,
        operator.id,
        found.tenant_id,
        SCOPE_PERMISSIONS[GrantScope(found.scope)],
        grant_id=grant_id,
        owner_id=operator.owner_id,
    )
    with tenant_session(db, found.tenant_id) as session:
        grant = _get(session, grant_id)
        # Every use, not only the first: each request through a grant is one event in the tenant's chain.
        details = {"scope": grant.scope, "first_use": grant.first_used_at is None}
        record(session, Action.GRANT_USED, ("operator_grant", grant.id), details=details, actor=acting)
        if grant.first_used_at is None:
            grant.first_used_at = datetime.now(UTC)
            entitlement_changed(
                session,
                operator,
                EntitlementEvent.OPERATOR_GRANT_USED,
                f"operator {grant.operator_id}",
                _describe(grant),
            )
    return acting


def end_expired_grants(db: Database, batch: int = 500) -> int:
    """Mark every grant past its window as expired and tell the tenant; returns how many ended."""
    with platform_session(db) as session:
        ended = session.execute(
            text("SELECT tenant_id, grant_id FROM bookwarden_ended_operator_grants(:n)"), {"n": batch}
        ).all()
    system = SYSTEM
    for tenant_id, grant_id in ended:
        with tenant_session(db, tenant_id) as session:
            grant = _get(session, grant_id)
            if grant.status not in (GrantStatus.REQUESTED, GrantStatus.APPROVED):
                continue  # ended by someone else meanwhile
            was_approved = grant.status == GrantStatus.APPROVED
            grant.status, grant.ended_at = GrantStatus.EXPIRED.value, datetime.now(UTC)
            session.flush()
            _record(session, Action.GRANT_EXPIRED, grant, actor=system, was_approved=was_approved)
            if was_approved:
                entitlement_changed(
                    session,
                    system,
                    EntitlementEvent.OPERATOR_GRANT_EXPIRED,
                    f"operator {grant.operator_id}",
                    _describe(grant),
                )
    return len(ended)


def forget_ended(session: TenantSession, cutoff: datetime, limit: int) -> list[UUID]:
    """Delete at most `limit` grants of the institution that ended before `cutoff`; their ids. A grant ends
    when it is denied (decided_at), revoked or expired (ended_at); one still asked for or open never goes."""
    grants = OperatorGrant.__table__
    ended = func.coalesce(grants.c.ended_at, grants.c.decided_at)
    chosen = (
        select(grants.c.id)
        .where(grants.c.tenant_id == session.tenant_id, grants.c.status.in_(ENDED), ended < cutoff)
        .order_by(grants.c.id)
        .limit(limit)
    )
    removed = session.scalars(
        delete(grants)
        .where(grants.c.tenant_id == session.tenant_id, grants.c.id.in_(chosen.scalar_subquery()))
        .returning(grants.c.id)
    )
    return list(removed)


def list_grants(session: TenantSession, actor: Principal) -> list[OperatorGrant]:
    authorize(actor, Permission.OPERATOR_GRANTS_APPROVE)
    query = select(OperatorGrant).where(OperatorGrant.tenant_id == session.tenant_id)
    found = list(session.scalars(query.order_by(OperatorGrant.created_at.desc()).limit(500)))
    ids = [grant.id for grant in found]
    record(session, Action.GRANT_LISTED, ("operator_grant", None), details={"ids": ids, "count": len(ids)})
    return found


def _record(
    session: TenantSession, action: Action, grant: OperatorGrant, actor: Principal | None = None, **details
) -> None:
    # The justification is free text (it may name people): the ticket reference stands for it.
    described = {
        "operator_id": grant.operator_id,
        "scope": grant.scope,
        "ticket": grant.ticket,
        "starts_at": grant.starts_at.isoformat(),
        "expires_at": grant.expires_at.isoformat(),
        "break_glass": grant.break_glass,
    }
    if grant.requested_by_person not in (None, grant.operator_id):  # asked through a token: name its owner
        described["requested_by_person"] = grant.requested_by_person
    record(session, action, ("operator_grant", grant.id), details={**described, **details}, actor=actor)


def _get(session: TenantSession, grant_id: UUID) -> OperatorGrant:
    grant = session.get(OperatorGrant, (session.tenant_id, grant_id))
    if grant is None:
        raise NotFound(f"no operator grant {grant_id}")
    return grant


def _pending(session: TenantSession, grant_id: UUID) -> OperatorGrant:
    grant = _get(session, grant_id)
    if grant.status != GrantStatus.REQUESTED:
        raise Conflict(f"the grant is {grant.status}; only a requested grant can be decided")
    if grant.expires_at <= datetime.now(UTC):
        raise Conflict("the grant's window has passed; ask for a new one")
    return grant


def _asked_by(principal: Principal, grant: OperatorGrant) -> bool:
    """The credential that asked, or the operator behind it through another credential."""
    return principal.same_party(grant.operator_id, grant.requested_by_person)


def _decide(grant: OperatorGrant, actor: Principal, status: GrantStatus) -> None:
    if _asked_by(actor, grant):
        # Said here, not left to the database's decider_is_not_asker_person constraint (a 500).
        raise SegregationOfDutiesError("whoever asked for a grant cannot decide it: another person must")
    grant.status, grant.decided_by, grant.decided_at = status.value, actor.id, datetime.now(UTC)
    grant.decided_by_person = actor.person


def _describe(grant: OperatorGrant) -> dict[str, str]:
    start, end = (moment.isoformat(timespec="minutes") for moment in (grant.starts_at, grant.expires_at))
    return {
        "grant": str(grant.id),
        "scope": grant.scope,
        "ticket": grant.ticket,
        "justification": grant.justification,
        "window (UTC)": f"{start} to {end}",
    }


OWN_LIMIT = 200


def own_grants(db: Database, operator: Principal) -> list[dict]:
    """The grants this operator asked for, in every institution, newest first: institution, scope, ticket,
    window and status, never the justification. Recorded in the platform's trail."""
    authorize(operator, Permission.PLATFORM_GRANTS_REQUEST)
    _require_operator(operator)
    with platform_session(db) as session:
        rows = session.execute(
            text("SELECT * FROM bookwarden_operator_own_grants(:credential, :person, :n)"),
            {"credential": operator.id, "person": operator.person, "n": OWN_LIMIT},
        ).mappings()
        found = [dict(row) for row in rows]
        details = {"own": True, "count": len(found), "ids": [row["id"] for row in found]}
        record(session, Action.GRANT_LISTED, ("operator_grant", None), details=details, actor=operator)
    return found
