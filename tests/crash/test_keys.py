"""Master-key, tenant-key and audit signing-key rotations killed at every step: every row stays readable in a
fresh process after the kill, and running the rotation again finishes it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from bookwarden.audit import signing
from bookwarden.audit.checkpoints import checkpoint_all
from bookwarden.core.config import Settings
from bookwarden.crypto.keyring import subject_keys, tenant_keys
from bookwarden.crypto.master import MasterKeys, key_file, load_master_keys, next_key_file, write_key_file
from bookwarden.db import key_rotation as rotation
from bookwarden.db import provision
from bookwarden.db.session import Database, tenant_session
from bookwarden.library import records
from bookwarden.library.schemas import PatronCreate
from tests.conftest import TEST_DATABASE
from tests.crash.kill import die_at

MASTER_POINTS = ["master.next_written", "master.rewrapping", "master.rewrapped", "master.provisioned"]
TENANT_POINTS = [
    "tenant_key.version_added",
    "tenant_key.rewrapping",
    "tenant_key.batch_rewrapped",
    "tenant_key.rewrapped",
]
SIGNING_POINTS = ["signing.retired_appended"]
POINTS = MASTER_POINTS + TENANT_POINTS + SIGNING_POINTS
NAMES = [f"Reader {n}" for n in range(5)]


@pytest.fixture
def patrons(committed_db, committed_tenant, settings, audit_holds):
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        ids = [records.create(session, records.PATRONS, PatronCreate(name=name)).id for name in NAMES]
    return tenant_id, ids


def _names(db: Database, tenant_id, ids) -> list[str]:
    db.keyring._subject_cache.clear()
    db.keyring._tenant_cache.clear()
    with tenant_session(db, tenant_id) as session:
        return [records.read(session, records.PATRONS, i).name for i in ids]


def _as_a_fresh_process(admin_url, keys: MasterKeys) -> Database:
    return Database.open(provision.database_urls(admin_url, TEST_DATABASE, keys.current), keys, pool_size=1)


@pytest.mark.parametrize("point", MASTER_POINTS)
def test_a_master_key_rotation_killed_anywhere_keeps_every_row_readable_and_resumes(
    committed_db, admin_url, patrons, tmp_path, point
):
    tenant_id, ids = patrons
    original = committed_db.master
    settings = Settings(
        home=tmp_path / "rotating", database_url=admin_url.render_as_string(hide_password=False),
        database_name=TEST_DATABASE,
    )  # fmt: skip
    write_key_file(key_file(settings), original.current)
    try:
        die_at(point, lambda _db: rotation.rotate_master(settings), committed_db)

        assert next_key_file(settings).exists()
        both = load_master_keys(settings)
        assert len(both.keys) == 2 and both.current_id == original.current_id
        fresh = _as_a_fresh_process(admin_url, both)
        try:
            assert _names(fresh, tenant_id, ids) == NAMES
        finally:
            fresh.dispose()

        rotation.rotate_master(settings)

        rotated = load_master_keys(settings)
        assert rotated.current_id != original.current_id and len(rotated.keys) == 1
        assert not next_key_file(settings).exists()
        fresh = _as_a_fresh_process(admin_url, rotated)
        try:
            assert _names(fresh, tenant_id, ids) == NAMES
        finally:
            fresh.dispose()
    finally:
        # Every role's password and every tenant key back under the session's master key.
        provision.provision(admin_url, TEST_DATABASE, original.current)
        committed_db.keyring.rewrap_under_master(
            MasterKeys(original.current_id, {**load_master_keys(settings).keys, **original.keys})
        )
        committed_db.keyring.master = original


@contextlib.contextmanager
def passwords_checked(admin_url) -> Iterator[None]:
    """The test server asks the service's roles for their passwords (SCRAM), as a production server does; the
    embedded one trusts every local connection, which would hide a role left with the wrong password."""
    with psycopg.connect(provision.libpq(admin_url), autocommit=True) as conn:
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
        before = hba.read_text()
        roles = f"{provision.OWNER_ROLE},{provision.APP_ROLE}"
        hba.write_text(f"local all {roles} scram-sha-256\n" + before)
        conn.execute("SELECT pg_reload_conf()")
        try:
            yield
        finally:
            hba.write_text(before)
            conn.execute("SELECT pg_reload_conf()")


def test_a_master_key_rotation_killed_after_the_passwords_changed_resumes_where_passwords_are_checked(
    committed_db, admin_url, patrons, tmp_path
):
    """Killed between the roles' new passwords and the key file's replacement, the rotation still starts from
    the old key file: it must connect with the old key's passwords to resume."""
    tenant_id, ids = patrons
    original = committed_db.master
    settings = Settings(
        home=tmp_path / "rotating", database_url=admin_url.render_as_string(hide_password=False),
        database_name=TEST_DATABASE,
    )  # fmt: skip
    write_key_file(key_file(settings), original.current)
    try:
        with passwords_checked(admin_url):
            die_at("master.provisioned", lambda _db: rotation.rotate_master(settings), committed_db)
            rotation.rotate_master(settings)
            rotated = load_master_keys(settings)
            fresh = _as_a_fresh_process(admin_url, rotated)
            try:
                assert _names(fresh, tenant_id, ids) == NAMES
            finally:
                fresh.dispose()
    finally:
        provision.provision(admin_url, TEST_DATABASE, original.current)
        committed_db.keyring.rewrap_under_master(
            MasterKeys(original.current_id, {**load_master_keys(settings).keys, **original.keys})
        )
        committed_db.keyring.master = original


@pytest.mark.parametrize("point", TENANT_POINTS)
def test_a_tenant_key_rotation_killed_anywhere_finishes_on_the_next_run(committed_db, patrons, point):
    tenant_id, ids = patrons
    die_at(point, lambda db: db.keyring.rotate_tenant_key(tenant_id, batch=2), committed_db)

    assert _names(committed_db, tenant_id, ids) == NAMES  # mixed versions read alike
    committed_db.keyring.rotate_tenant_key(tenant_id, batch=2)

    with committed_db.keyring.engine.connect() as conn:
        ours = (tenant_keys.c.tenant_id == tenant_id) & (tenant_keys.c.purpose == "data")
        live = (
            conn.execute(select(tenant_keys.c.version).where(ours, tenant_keys.c.wrapped.is_not(None))).scalars().all()
        )
        on = set(conn.execute(select(subject_keys.c.tenant_key_version).where(subject_keys.c.tenant_id == tenant_id))
                 .scalars())  # fmt: skip
    assert len(live) == 1 and live[0] >= 2 and on == set(live)  # old versions destroyed, every key on the new one
    assert _names(committed_db, tenant_id, ids) == NAMES


@pytest.mark.parametrize("point", SIGNING_POINTS)
def test_a_signing_key_rotation_killed_between_its_steps_trusts_both_keys(committed_db, settings, patrons, point):
    old = signing.load_signing_key(settings)
    checkpoint_all(committed_db, old, every_events=None, every=None)

    die_at(point, lambda _db: signing.rotate_signing_key(settings), committed_db)

    assert signing.load_signing_key(settings).key_id == old.key_id  # the key file was not replaced
    assert old.public in signing.trusted_public_keys(settings)
    signing.rotate_signing_key(settings)  # again: retires the same key twice, which reads as once
    new = signing.load_signing_key(settings)
    assert new.key_id != old.key_id and {old.public, new.public} <= set(signing.trusted_public_keys(settings))
    with tenant_session(committed_db, patrons[0]) as session:
        records.create(session, records.PATRONS, PatronCreate(name="After the rotation"))
    assert checkpoint_all(committed_db, new, every_events=None, every=None)  # audit_holds verifies both
