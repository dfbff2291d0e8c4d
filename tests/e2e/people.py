"""People for the browser tests, made through the services (committed: the served app reads them)."""

from __future__ import annotations

import uuid

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind, AccountStatus
from tests.helpers import grant

PASSWORD = "correct horse battery staple 42"


def administrator(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def staff(db, tenant_id, username: str, *, roles=(), totp: str | None = None):
    """An active staff account signing in with PASSWORD (and `totp`'s codes, when given)."""
    with tenant_session(db, tenant_id) as session:
        account = accounts.create_account(
            session, administrator(tenant_id), kind=AccountKind.STAFF, username=username,
            email=f"{username}@staff.example",
        )  # fmt: skip
        # Hashed directly at the tests' fast parameters: the password policy has tests of its own.
        account.password_hash = passwords.hash_password(PASSWORD, passwords.DEFAULT)
        account.status = AccountStatus.ACTIVE
        if totp is not None:
            key = session.keyring.subject_key(tenant_id, account.id)
            account.totp_secret = encrypt_field(key, tenant_id, "accounts", "totp_secret", account.id, totp)
        session.flush()
        for role in roles:
            grant(session, tenant_id, account.id, role)
        return account.id
