"""Access's numbers for the security report and its check for the live evidence.

Entitlement changes (who may do what: accounts, roles, tokens, policies, sign-on, security contacts),
operator grants asked, decided and used, and the check that no operator reached an institution's data
without a grant: every event an operator left in the institution's chain either names a grant that was
approved and current at that moment, or is one of the acts that reach no data (the grant's own
lifecycle, the console's flagged exceptions: docs/architecture.md "The console").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select

from bookwarden.access.grants.models import GrantStatus, OperatorGrant
from bookwarden.access.grants.service import CLOCK_SKEW
from bookwarden.access.roles.models import SecurityContact
from bookwarden.audit import tally
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.principal import PrincipalKind
from bookwarden.db.session import TenantSession

A = Action
ENTITLEMENT_ACTIONS = (
    A.ACCOUNT_CREATED,
    A.ACCOUNT_INVITED,
    A.ACCOUNT_DISABLED,
    A.ACCOUNT_ENABLED,
    A.ACCOUNT_DELETED,
    A.ROLE_CREATED,
    A.ROLE_CHANGED,
    A.ROLE_DELETED,
    A.ROLE_GRANTED,
    A.ROLE_REVOKED,
    A.PASSWORD_RESET,
    A.MFA_RESET,
    A.TOKEN_ISSUED,
    A.TOKEN_REVOKED,
    A.POLICY_CHANGED,
    A.SSO_CONFIGURED,
    A.SSO_REMOVED,
    A.SECURITY_CONTACT_ADDED,
    A.SECURITY_CONTACT_REMOVED,
    A.NOTICE_MUTES_CHANGED,
    # The platform's own staff (the platform chain).
    A.OPERATOR_ACCOUNT_CREATED,
    A.OPERATOR_ACCOUNT_DISABLED,
    A.OPERATOR_ACCOUNT_ENABLED,
)

OPERATOR_KINDS = (PrincipalKind.OPERATOR, PrincipalKind.OPERATOR_TOKEN, PrincipalKind.CONSOLE)
# What an operator may leave in an institution's chain without a grant: none of it reads or changes the
# institution's data (asking for and deciding grants; the console's flagged exceptions: an institution's
# tokens, its key re-wrapped, its backup, its first administrator invited, escalation metadata, the
# retention run, which is the purge job run now).
WITHOUT_GRANT = frozenset(
    {
        A.GRANT_REQUESTED,
        A.GRANT_BREAK_GLASS,
        A.GRANT_REVOKED,
        A.TOKEN_ISSUED,
        A.TOKEN_REVOKED,
        A.TOKEN_LISTED,
        A.KEY_ROTATED,
        A.BACKUP_CREATED,
        A.ACCOUNT_INVITED,
        A.ACCOUNT_CREATED,
        A.DPO_ESCALATION_LISTED,
        A.DPO_ESCALATION_ACKNOWLEDGED,
        A.RETENTION_RUN_STARTED,
        A.RETENTION_PURGED,
        A.RETENTION_RUN_COMPLETED,
        A.PERIOD_ENFORCED,
        A.TENANT_CREATED,
        A.TENANT_SUSPENDED,
        A.TENANT_RESUMED,
        A.TENANT_VIEWED,
        # Incident handling, the processor's duty (incidents/): the breach scope is found from ids in the trail
        # and the institution is told; no patron's data is opened, so no grant is asked.
        A.INCIDENT_OPENED,
        A.INCIDENT_AFFECTED,
        A.BREACH_MARKED,
        A.BREACH_NOTIFIED,
        A.BREACH_NOT_NOTIFIED,
    }
)
REACHED = (GrantStatus.APPROVED.value, GrantStatus.EXPIRED.value, GrantStatus.REVOKED.value)


def entitlement_changes(session: TenantSession, since: datetime, until: datetime) -> dict[str, int]:
    """{action: count} of every change of who may do what in the chain in context."""
    return tally.by_action(session, ENTITLEMENT_ACTIONS, since, until)


def grants(session: TenantSession, since: datetime, until: datetime) -> dict[str, int]:
    """Operator grants of the institution in context: asked, approved, by break-glass, denied, and used."""
    asked = select(OperatorGrant).where(
        OperatorGrant.tenant_id == session.tenant_id,
        OperatorGrant.created_at >= since,
        OperatorGrant.created_at < until,
    )
    rows = list(session.scalars(asked))
    used = tally.by_action(session, [A.GRANT_USED], since, until)[A.GRANT_USED.value]
    distinct = session.scalar(
        select(func.count(func.distinct(OperatorGrant.id))).where(
            OperatorGrant.tenant_id == session.tenant_id,
            OperatorGrant.first_used_at.is_not(None),
            OperatorGrant.starts_at < until,
            OperatorGrant.expires_at >= since,
        )
    )
    return {
        "asked": len(rows),
        "approved": sum(1 for g in rows if g.decided_at is not None and g.status in REACHED and not g.break_glass),
        "break_glass": sum(1 for g in rows if g.break_glass),
        "denied": sum(1 for g in rows if g.status == GrantStatus.DENIED),
        "uses": used,
        "grants_used": distinct or 0,
    }


@dataclass(frozen=True)
class UngrantedAccess:
    seq: int
    action: str
    operator_id: UUID | None
    grant_id: UUID | None
    occurred_at: datetime
    why: str


def ungranted_operator_events(session: TenantSession, since: datetime, until: datetime) -> list[UngrantedAccess]:
    """Every event an operator left in the chain in context in [since, until) that no grant covers."""
    by_id = {
        g.id: g for g in session.scalars(select(OperatorGrant).where(OperatorGrant.tenant_id == session.tenant_id))
    }
    found = []
    for seq, action, outcome, actor_id, grant_id, occurred_at in tally.by_actor_kind(
        session, OPERATOR_KINDS, since, until
    ):
        if outcome != Outcome.SUCCEEDED:
            continue  # refused: it reached nothing
        if grant_id is None:
            if action not in WITHOUT_GRANT:
                found.append(UngrantedAccess(seq, action, actor_id, None, occurred_at, "no grant named"))
            continue
        grant = by_id.get(grant_id)
        why = _not_covering(grant, actor_id, occurred_at)
        if why is not None:
            found.append(UngrantedAccess(seq, action, actor_id, grant_id, occurred_at, why))
    return found


def _not_covering(grant: OperatorGrant | None, actor_id: UUID | None, at: datetime) -> str | None:
    if grant is None:
        return "names a grant this institution never gave"
    if grant.status not in REACHED or grant.decided_at is None:
        return f"names a grant that is {grant.status}, never approved"
    if actor_id not in (grant.operator_id, grant.requested_by_person):
        return "names a grant given to another operator"
    ended = grant.ended_at or grant.expires_at
    if not (grant.starts_at - CLOCK_SKEW <= at <= min(ended, grant.expires_at) + CLOCK_SKEW):
        return "outside the grant's window"
    return None


def security_contacts(session: TenantSession) -> int:
    """How many designated security contacts the institution in context has (who hears of every change)."""
    return session.scalar(
        select(func.count()).select_from(SecurityContact).where(SecurityContact.tenant_id == session.tenant_id)
    )
