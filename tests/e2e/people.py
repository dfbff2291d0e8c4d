"""People for the browser tests, made through the services (committed: the served app reads them)."""

from __future__ import annotations

import re
import uuid

import pyotp

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind, AccountStatus
from bookwarden.tenancy.models import Tenant
from tests.helpers import grant, stored_hash

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
        account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
        account.status = AccountStatus.ACTIVE
        if totp is not None:
            key = session.keyring.subject_key(tenant_id, account.id)
            account.totp_secret = encrypt_field(key, tenant_id, "accounts", "totp_secret", account.id, totp)
        session.flush()
        for role in roles:
            grant(session, tenant_id, account.id, role)
        return account.id


def patron(db, tenant_id, username: str, *, name: str = "Ada Reader", email: str | None = None):
    """A patron record with loans and a post, and the patron's portal account (PASSWORD): (account id, patron id)."""
    from datetime import UTC, datetime, timedelta

    from bookwarden.core.permissions import BuiltinRole
    from bookwarden.identity import roles as access
    from bookwarden.library import records, schemas

    email = email or f"{username}@patrons.example"
    with tenant_session(db, tenant_id) as session:
        record = records.create(session, records.PATRONS, schemas.PatronCreate(name=name, email=email))
        now = datetime.now(UTC)
        for days in (3, 40, 75):
            borrowed = now - timedelta(days=days)
            loan = schemas.LoanCreate(
                patron_id=record.id, item_id=f"item-{days}", item_title=f"Book {days}", borrowed_at=borrowed,
                due_at=borrowed + timedelta(days=21),
            )  # fmt: skip
            records.create(session, records.LOANS, loan)
        records.create(
            session, records.POSTS, schemas.PostCreate(patron_id=record.id, board="book-club", body="Loved it.")
        )
        account = accounts.create_account(
            session, administrator(tenant_id), kind=AccountKind.PATRON, username=username, email=email,
            patron_id=record.id,
        )  # fmt: skip
        account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
        account.status = AccountStatus.ACTIVE
        session.flush()
        access.grant_role(session, administrator(tenant_id), account.id, BuiltinRole.PATRON)
        return account.id, record.id


NOTICE = (
    "We hold your name, contact details and loans to run the library.\n\n"
    "You can see, download, correct and erase your data in the patron portal."
)


def publish_notice(db, tenant_id, version: str = "2026-12") -> None:
    """The institution's privacy notice, in force: what consents and registrations name."""
    from bookwarden.privacy.notices import service as notices

    with tenant_session(db, tenant_id) as session:
        officer = Principal(
            PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
        )
        notices.publish(session, officer, version=version, notice_text=NOTICE, material=False)


def slug_of(db, tenant_id) -> str:
    """The institution's slug, as a person types it on the sign-in page."""
    with platform_session(db) as session:
        return session.get(Tenant, tenant_id).slug


def sign_in_staff(page, url: str, slug: str, username: str, secret: str) -> None:
    """A staff member signed in with their password and a TOTP code, landing on the console."""
    page.goto(f"{url}/signin")
    page.get_by_label("Institution").fill(slug)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/signin/second-factor"))
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/console"))
