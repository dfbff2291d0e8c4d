"""Identity's recurring duties: forget quiet per-address failure counts; purge what has expired.

Expired sessions, unanswered WebAuthn challenges and unconfirmed TOTP enrolments are useless
once past their time, and a session row names an address and a browser: it is not kept longer
than a day after it ended. Institutional sign-ins left unanswered (saml_requests, 10 minutes) and
the ids of used SAML assertions past their own expiry (kept only to refuse a replay until then)
go too: a new sign-in start clears its institution's expired requests, but an institution nobody
signs in to any more would keep a flood of abandoned ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_

from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity.models import MfaChallenge, SignInSession, TotpEnrolment
from bookwarden.identity.saml.models import SamlConsumedAssertion, SamlRequest
from bookwarden.identity.throttle import BUDGETS, forget_quiet_addresses, forget_spent_budgets
from bookwarden.jobs.service import handler, schedule
from bookwarden.tenancy.service import list_tenants

FORGET_ADDRESSES = "identity.forget_quiet_addresses"
PURGE_EXPIRED = "identity.purge_expired"
SESSION_KEPT_AFTER_END = timedelta(days=1)


@handler(FORGET_ADDRESSES)
def _forget(db: Database, payload: dict) -> None:
    with platform_session(db) as session:
        forget_quiet_addresses(session)
        forget_spent_budgets(session, BUDGETS)


@handler(PURGE_EXPIRED)
def _purge(db: Database, payload: dict) -> None:
    purge_expired(db)


def purge_expired(db: Database) -> int:
    """Delete ended sessions (a day after they ended), expired challenges, enrolments, sign-on requests and
    used-assertion ids; returns rows."""
    now = datetime.now(UTC)
    with platform_session(db) as session:
        tenant_ids = [t.id for t in list_tenants(session)]
    removed = 0
    for tenant_id in tenant_ids:
        with tenant_session(db, tenant_id) as session:
            ended = or_(
                SignInSession.absolute_expires_at < now - SESSION_KEPT_AFTER_END,
                SignInSession.idle_expires_at < now - SESSION_KEPT_AFTER_END,
                SignInSession.revoked_at < now - SESSION_KEPT_AFTER_END,
            )
            for statement in (
                delete(SignInSession).where(ended),
                delete(MfaChallenge).where(MfaChallenge.expires_at < now),
                delete(TotpEnrolment).where(TotpEnrolment.expires_at < now),
                delete(SamlRequest).where(SamlRequest.expires_at < now),
                delete(SamlConsumedAssertion).where(SamlConsumedAssertion.expires_at < now),
            ):
                removed += session.execute(statement).rowcount
    return removed


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, FORGET_ADDRESSES, FORGET_ADDRESSES, timedelta(days=1))
        schedule(session, PURGE_EXPIRED, PURGE_EXPIRED, timedelta(hours=1))
