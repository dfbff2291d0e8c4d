"""Fixtures of the backup tests: the settings a backup is taken under, and a committed world to back up."""

from __future__ import annotations

import os
import uuid
from types import SimpleNamespace

import pytest

from bookwarden.audit import signing
from bookwarden.audit.checkpoints import checkpoint_all
from bookwarden.core.config import Settings
from bookwarden.db.session import tenant_session
from bookwarden.library import records as library
from bookwarden.library import schemas
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture


@pytest.fixture
def settings(home, tmp_path) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    return Settings(
        home=home,
        backup_dir=tmp_path / "backups",
        master_key=None,
        audit_signing_key=None,
        database_url=None,
        audit_retired_keys=None,
    )


@pytest.fixture
def world(committed_db, committed_tenant, settings):
    """Two institutions with patrons (some files in one's area), every chain sealed in a checkpoint."""
    tenants = [committed_tenant(), committed_tenant()]
    patrons: dict[uuid.UUID, list[uuid.UUID]] = {}
    for tenant_id in tenants:
        with tenant_session(committed_db, tenant_id) as session:
            patrons[tenant_id] = [
                library.create(session, library.PATRONS, schemas.PatronCreate(name=f"Patron {n}")).id for n in range(5)
            ]
    area = settings.resolved_home / "tenants" / str(tenants[0])
    area.mkdir(parents=True, exist_ok=True)
    (area / "package.bin").write_bytes(os.urandom(2048))
    checkpoint_all(committed_db, signing.load_signing_key(settings))
    return SimpleNamespace(tenants=tenants, patrons=patrons)
