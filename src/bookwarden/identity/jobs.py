"""Identity's recurring duties: forget quiet per-address failure counts; purge what has expired; keep the
periods the personal-data registry publishes for accounts and credentials.

Expired sessions, unanswered WebAuthn challenges and unconfirmed TOTP enrolments are useless
once past their time, and a session row names an address and a browser: it is not kept longer
than a day after it ended, an institution's or an operator's. Institutional sign-ins left unanswered
(saml_requests, 10 minutes) and the ids of used SAML assertions past their own expiry (kept only to
refuse a replay until then) go too: a new sign-in start clears its institution's expired requests, but an
institution nobody signs in to any more would keep a flood of abandoned ones. What goes is counted in
the trail of the institution (or the platform's, for operator sessions), one event per table.

Daily: an account 2 years without a sign-in is deleted with its key (`remove_inactive`), and old password
hashes beyond the policy's history go (`trim_password_history`), each batch with its event
(tenancy/periods.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Delete, delete, func, or_, select

from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity.accounts.service import KEEP_INACTIVE, remove_inactive, trim_password_history
from bookwarden.identity.models import MfaChallenge, SignInSession, TotpEnrolment
from bookwarden.identity.operators.models import OperatorSession
from bookwarden.identity.saml.models import SamlConsumedAssertion, SamlRequest
from bookwarden.identity.throttle import BUDGETS, forget_quiet_addresses, forget_spent_budgets
from bookwarden.jobs.service import handler, schedule
from bookwarden.tenancy.periods import Period, enforce, institutions

FORGET_ADDRESSES = "identity.forget_quiet_addresses"
PURGE_EXPIRED = "identity.purge_expired"
REMOVE_INACTIVE = "identity.remove_inactive_accounts"
TRIM_HISTORY = "identity.trim_password_history"
# The registry's "sign-in sessions: 1 day after they end" (privacy/registry.py DEVICE_NETWORK).
SESSION_KEPT_AFTER_END = timedelta(days=1)

INACTIVE_ACCOUNTS = Period(REMOVE_INACTIVE, "accounts", KEEP_INACTIVE, remove_inactive)
PASSWORD_HISTORY = Period(TRIM_HISTORY, "password_history", None, trim_password_history)


@handler(FORGET_ADDRESSES)
def _forget(db: Database, payload: dict) -> None:
    with platform_session(db) as session:
        forget_quiet_addresses(session)
        forget_spent_budgets(session, BUDGETS)


@handler(PURGE_EXPIRED)
def _purge(db: Database, payload: dict) -> None:
    purge_expired(db)


@handler(REMOVE_INACTIVE)
def _remove_inactive(db: Database, payload: dict) -> None:
    enforce(db, INACTIVE_ACCOUNTS, actor=SYSTEM)


@handler(TRIM_HISTORY)
def _trim_password_history(db: Database, payload: dict) -> None:
    enforce(db, PASSWORD_HISTORY, actor=SYSTEM)


def _ended(table, cutoff: datetime):
    return or_(table.absolute_expires_at < cutoff, table.idle_expires_at < cutoff, table.revoked_at < cutoff)


def purge_expired(db: Database) -> int:
    """Delete ended sessions (a day after they ended, operators' too), expired challenges, enrolments, sign-on
    requests and used-assertion ids; returns rows. Each table's count is recorded in its chain."""
    with platform_session(db) as session:
        now = session.scalar(select(func.now()))
        tenant_ids = institutions(session)
        kept_after = now - SESSION_KEPT_AFTER_END
        operators = delete(OperatorSession).where(_ended(OperatorSession, kept_after))
        removed = _removed(session, "operator_sessions", operators)
    used = SamlConsumedAssertion
    for tenant_id in tenant_ids:
        with tenant_session(db, tenant_id) as session:
            for table, statement in (
                ("sessions", delete(SignInSession).where(_ended(SignInSession, kept_after))),
                ("mfa_challenges", delete(MfaChallenge).where(MfaChallenge.expires_at < now)),
                ("totp_enrolments", delete(TotpEnrolment).where(TotpEnrolment.expires_at < now)),
                ("saml_requests", delete(SamlRequest).where(SamlRequest.expires_at < now)),
                ("saml_consumed_assertions", delete(used).where(used.expires_at < now)),
            ):
                removed += _removed(session, table, statement)
    return removed


def _removed(session, table: str, statement: Delete) -> int:
    count = session.execute(statement).rowcount
    if count:
        details = {"job": PURGE_EXPIRED, "table": table, "count": count}
        if table.endswith("sessions"):
            details["keep_days"] = SESSION_KEPT_AFTER_END.days
        record(session, Action.PERIOD_ENFORCED, (table, None), actor=SYSTEM, details=details)
    return count


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, FORGET_ADDRESSES, FORGET_ADDRESSES, timedelta(days=1))
        schedule(session, PURGE_EXPIRED, PURGE_EXPIRED, timedelta(hours=1))
        schedule(session, REMOVE_INACTIVE, REMOVE_INACTIVE, timedelta(days=1))
        schedule(session, TRIM_HISTORY, TRIM_HISTORY, timedelta(days=1))
