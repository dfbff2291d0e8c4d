"""Fixtures of the crash suite: one settings object (and BOOKWARDEN_HOME, so code that reads the process's
settings agrees with it), the real SMTP server, and the checks every kill ends with."""

from __future__ import annotations

import pytest

from bookwarden.core.config import Settings, get_settings
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
