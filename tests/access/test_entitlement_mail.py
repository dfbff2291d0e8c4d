"""An entitlement change reaches the security contacts' mailbox through the real SMTP path."""

from __future__ import annotations

import uuid

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.jobs.worker import Worker
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import grant


def test_a_role_grant_is_mailed_to_every_security_contact(committed_db, home, smtp_server):  # noqa: F811
    with platform_session(committed_db) as session:
        tenant = tenancy.create_tenant(session, committed_db.keyring, home, "notice-u", "Notice University")
    admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with tenant_session(committed_db, tenant.id) as session:
        for contact in ("soc@notice.example.org", "ciso@notice.example.org"):
            add_security_contact(session, contact)
    with tenant_session(committed_db, tenant.id) as session:
        account = accounts.create_account(session, admin, kind=AccountKind.STAFF, username="eve")
        grant(session, tenant.id, account.id, BuiltinRole.TENANT_ADMIN)

    worker = Worker(committed_db, "notices")
    while worker.run_one():
        pass

    received = {(m.recipients[0], m.message["Subject"]) for m in smtp_server.messages}
    for contact in ("soc@notice.example.org", "ciso@notice.example.org"):
        assert (contact, "[Notice University] security notice: role granted") in received
        assert (contact, "[Notice University] security notice: account created") in received
    granted = next(m for m in smtp_server.messages if "role granted" in m.message["Subject"])
    body = granted.message.get_content()
    assert "tenant_admin" in body and str(account.id) in body and "cannot be switched off" in body
    assert "List-Unsubscribe" not in granted.message  # security notices cannot be unsubscribed
