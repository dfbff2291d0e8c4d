"""Ended sessions and stale second-factor ceremonies are purged; live ones stay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.identity import sessions
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.jobs import purge_expired
from bookwarden.identity.models import AccountKind, MfaChallenge, SignInSession, TotpEnrolment


def test_purge_removes_what_has_ended_in_every_tenant_and_keeps_what_lives(db, tenant, other_tenant):
    now = datetime.now(UTC)
    kept = {}
    for t in (tenant, other_tenant):
        admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), t.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
        with tenant_session(db, t.id) as session:
            account = accounts.create_account(session, admin, kind=AccountKind.STAFF, username="kim")
            old, _ = sessions.create_session(
                session, account.id, source_address="10.0.0.1", user_agent="t", second_factor_pending=False
            )
            live, _ = sessions.create_session(
                session, account.id, source_address="10.0.0.2", user_agent="t", second_factor_pending=False
            )
            old.created_at = old.last_seen_at = now - timedelta(days=3)
            old.idle_expires_at = old.absolute_expires_at = now - timedelta(days=2)
            session.add_all(
                [
                    MfaChallenge(
                        tenant_id=t.id,
                        id=uuid.uuid4(),
                        account_id=account.id,
                        session_id=live.id,
                        purpose="register",
                        challenge=b"x" * 32,
                        expires_at=now - timedelta(minutes=1),
                    ),
                    TotpEnrolment(
                        tenant_id=t.id, account_id=account.id, secret=b"sealed", expires_at=now - timedelta(1)
                    ),
                ]
            )
            kept[t.id] = live.id

    assert purge_expired(db) == 6  # per tenant: one session, one challenge, one enrolment

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            assert session.scalars(select(SignInSession.id)).all() == [kept[t.id]]
            assert session.scalar(select(func.count()).select_from(MfaChallenge)) == 0
            assert session.scalar(select(func.count()).select_from(TotpEnrolment)) == 0
