"""Fixtures of the crash suite: one settings object (and BOOKWARDEN_HOME, so code that reads the process's
settings agrees with it), the real SMTP server, and the checks every kill ends with."""

from __future__ import annotations

import uuid

import pytest

from bookwarden.core.config import Settings, get_settings
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind, AccountStatus
from tests.crash.kill import chains_verify
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture


@pytest.fixture
def settings(home, tmp_path, monkeypatch) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("BOOKWARDEN_HOME", str(home))
    monkeypatch.setenv("BOOKWARDEN_BACKUP_DIR", str(tmp_path / "backups"))
    get_settings.cache_clear()
    yield Settings(home=home, backup_dir=tmp_path / "backups", master_key=None, audit_signing_key=None)
    get_settings.cache_clear()


@pytest.fixture
def audit_holds(committed_db, settings):
    """After the test: every audit chain verifies, whatever was killed where."""
    yield
    chains_verify(committed_db, settings)


@pytest.fixture
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def holder(committed_db, committed_tenant, settings, audit_holds, fast_hashing):
    """An active staff account with an address, and an administrator who has reset links mailed to it."""
    tenant_id = committed_tenant()
    admin = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset({Permission.ACCOUNTS_MANAGE}))
    with tenant_session(committed_db, tenant_id) as session:
        account = accounts.create_account(
            session, admin, kind=AccountKind.STAFF, username="rita", email="rita@alpha.example"
        )
        account.status = AccountStatus.ACTIVE
    return tenant_id, account.id, admin
