"""Identity's numbers for the security report and its checks for the live evidence.

Sign-ins and their failures per day (from the trail of the chain in context: an institution's accounts,
or the platform's operators), which privileged accounts lack a second factor, and which stored password
hashes fall below the argon2id floor (read from the hash strings' own parameters).
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import select

from bookwarden.access.power import power_class
from bookwarden.access.roles.reads import account_permissions
from bookwarden.audit import tally
from bookwarden.audit.events import Action
from bookwarden.db.session import TenantSession
from bookwarden.identity.enrolment.service import has_factor
from bookwarden.identity.models import Account, AccountStatus, PasswordHistory
from bookwarden.identity.operators.models import OperatorAccount, OperatorStatus
from bookwarden.identity.passwords import floor_problem

# What a sign-in leaves in the trail, and the column of the report each counts in.
SIGN_IN_ACTIONS = {
    Action.SIGN_IN_SUCCEEDED: "succeeded",
    Action.SIGN_IN_FAILED: "failed",
    Action.MFA_FAILED: "second_factor_failed",
    Action.SIGN_IN_THROTTLED: "throttled",
    Action.ACCOUNT_LOCKED: "locked",
}


def sign_ins(session: TenantSession, since: datetime, until: datetime) -> dict[date, dict[str, int]]:
    """{day: {succeeded, failed, second_factor_failed, throttled, locked}} for the chain in context."""
    counted = tally.by_day(session, SIGN_IN_ACTIONS, since, until)
    return {
        day: {column: actions.get(action.value, 0) for action, column in SIGN_IN_ACTIONS.items()}
        for day, actions in sorted(counted.items())
    }


def privileged_without_second_factor(session: TenantSession) -> list[UUID]:
    """Active accounts of the institution in context whose permissions make them privileged (access/power.py)
    and that hold no authenticator app or security key."""
    accounts = session.scalars(
        select(Account).where(Account.tenant_id == session.tenant_id, Account.status == AccountStatus.ACTIVE)
    )
    return [
        account.id
        for account in accounts
        if power_class(account_permissions(session, account.id)).privileged and not has_factor(session, account)
    ]


def operators_without_second_factor(session) -> list[UUID]:
    """Active operator accounts (all privileged: every operator role is) without an authenticator app."""
    return list(
        session.scalars(
            select(OperatorAccount.id).where(
                OperatorAccount.status == OperatorStatus.ACTIVE, OperatorAccount.totp_secret.is_(None)
            )
        )
    )


def weak_password_hashes(session: TenantSession) -> list[tuple[str, UUID, str]]:
    """(table, row id, why) of every stored password hash of the institution in context below the floor:
    accounts' current hashes and the history kept to refuse reuse."""
    found = []
    for table, model in (("accounts", Account), ("password_history", PasswordHistory)):
        rows = session.execute(
            select(model.id, model.password_hash).where(
                model.tenant_id == session.tenant_id, model.password_hash.is_not(None)
            )
        )
        found += [(table, row_id, why) for row_id, stored in rows if (why := floor_problem(stored)) is not None]
    return found


def weak_operator_hashes(session) -> list[tuple[str, UUID, str]]:
    """The same, for operator accounts (a platform session)."""
    rows = session.execute(
        select(OperatorAccount.id, OperatorAccount.password_hash).where(OperatorAccount.password_hash.is_not(None))
    )
    return [("operator_accounts", i, why) for i, stored in rows if (why := floor_problem(stored)) is not None]
