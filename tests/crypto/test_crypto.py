"""Keys and field encryption: ciphertext at rest, bound to its place, keys rotated by re-wrapping,
and a destroyed subject key that makes an earlier backup unreadable."""

from __future__ import annotations

import base64
import os
import stat
import uuid

import pytest
from sqlalchemy import select, text

from bookwarden.core.config import Settings
from bookwarden.crypto.aead import DecryptionError, new_key
from bookwarden.crypto.fields import FieldDecryptionError, decrypt_field, decrypt_fields, encrypt_field
from bookwarden.crypto.keyring import KeyDestroyed, blind_index, subject_keys, tenant_keys
from bookwarden.crypto.master import MasterKeyError, key_file, load_master_keys
from bookwarden.db import key_rotation as rotation
from bookwarden.db import provision
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import records, schemas
from bookwarden.library.models import Patron
from bookwarden.tenancy import service as tenancy
from tests.helpers import patron_deleted_for_good, restored_dump

ADA = schemas.PatronCreate(
    name="Ada Lovelace",
    email="Ada@Example.org",
    phone="+44 20 7946 0958",
    institutional_id="U-1815",
    barcode="21234000123456",
    birth_date="1815-12-10",
    postal_address="12 St James's Square",
    affiliation="faculty",
)


def _create(db, tenant, patron=ADA):
    with tenant_session(db, tenant.id) as session:
        return records.create(session, records.PATRONS, patron)


def test_personal_fields_are_ciphertext_at_rest(db, tenant):
    ada = _create(db, tenant)
    with tenant_session(db, tenant.id) as session:
        raw = session.execute(text("SELECT * FROM patrons WHERE id = :id"), {"id": ada.id}).mappings().one()
    stored = b"".join(v for v in raw.values() if isinstance(v, bytes))
    for plain in ("Ada Lovelace", "Ada@Example.org", "U-1815", "21234000123456", "1815-12-10", "Square", "faculty"):
        assert plain.encode() not in stored
    assert raw["name"][:1] == b"\x01" and len(raw["name"]) > len("Ada Lovelace") + 12


def test_ciphertext_moved_to_another_row_or_column_fails_to_open(db, tenant, client_for):
    ada, grace = _create(db, tenant), _create(db, tenant, schemas.PatronCreate(name="Grace Hopper"))
    with tenant_session(db, tenant.id) as session:
        key = db.keyring.subject_key(tenant.id, ada.id)
        row = session.get(Patron, (tenant.id, ada.id))
        assert decrypt_field(key, tenant.id, "patrons", "name", ada.id, row.name) == "Ada Lovelace"
        for place in [("patrons", "email", ada.id), ("patrons", "name", grace.id), ("loans", "name", ada.id)]:
            with pytest.raises(DecryptionError):
                decrypt_field(key, tenant.id, *place[:2], place[2], row.name)
        with pytest.raises(DecryptionError):
            decrypt_field(key, uuid.uuid4(), "patrons", "name", ada.id, row.name)
        # Tamper in the database itself: Ada's email ciphertext copied into her name column.
        session.execute(text("UPDATE patrons SET name = email WHERE id = :id"), {"id": ada.id})
    response = client_for(tenant).get(f"/api/v1/patrons/{ada.id}")
    assert response.status_code == 409
    assert response.json()["type"] == "urn:bookwarden:problem:integrity-failure"


def test_a_rows_fields_opened_together_bind_the_same_context_as_one_by_one():
    """decrypt_fields (the read path's) writes each AAD itself: it must be exactly decrypt_field's, and a
    value moved to another column must fail, named."""
    key, tenant_id, row_id = new_key(), uuid.uuid4(), uuid.uuid4()
    sealed = {c: encrypt_field(key, tenant_id, "patrons", c, row_id, f"{c} value") for c in ("name", "email")}
    sealed["phone"] = None
    assert decrypt_fields(key, tenant_id, "patrons", row_id, sealed) == {
        "name": "name value", "email": "email value", "phone": None
    }
    for wrong in ({"name": sealed["email"]}, {"email": sealed["name"]}):
        with pytest.raises(FieldDecryptionError) as failed:
            decrypt_fields(key, tenant_id, "patrons", row_id, wrong)
        assert failed.value.column == next(iter(wrong))
    with pytest.raises(FieldDecryptionError):
        decrypt_fields(key, tenant_id, "patrons", uuid.uuid4(), {"name": sealed["name"]})  # another row
    with pytest.raises(FieldDecryptionError):
        decrypt_fields(key, uuid.uuid4(), "patrons", row_id, {"name": sealed["name"]})  # another tenant


def test_flipped_bit_is_detected(db, tenant, client_for):
    ada = _create(db, tenant)
    with tenant_session(db, tenant.id) as session:
        session.execute(
            text("UPDATE patrons SET phone = overlay(phone placing '\\x00'::bytea from 20 for 1) WHERE id = :id"),
            {"id": ada.id},
        )
    assert client_for(tenant).get(f"/api/v1/patrons/{ada.id}").status_code == 409


def test_blind_indexes_find_exact_matches_only_and_differ_between_tenants(db, tenant, other_tenant, client_for):
    ada = _create(db, tenant)
    client = client_for(tenant)
    for by, value in [("email", "ada@example.ORG"), ("institutional_id", "U-1815"), ("barcode", "21234000123456")]:
        found = client.post("/api/v1/patrons/lookup", json={"by": by, "value": value}).json()
        assert [p["id"] for p in found] == [str(ada.id)]
    assert client.post("/api/v1/patrons/lookup", json={"by": "email", "value": "ada@example.or"}).json() == []
    mine, theirs = db.keyring.index_key(tenant.id), db.keyring.index_key(other_tenant.id)
    assert blind_index(mine, "email", "a@b.c") != blind_index(theirs, "email", "a@b.c")
    assert blind_index(mine, "email", "2123") != blind_index(mine, "barcode", "2123")


def test_unique_identifiers_are_enforced_through_their_blind_index(db, tenant, client_for):
    _create(db, tenant)
    again = client_for(tenant).post("/api/v1/patrons", json={"name": "Impostor", "barcode": "21234000123456"})
    assert again.status_code == 409
    assert "barcode" in again.json()["detail"]


def test_master_key_file_is_created_0600_and_refused_when_readable_by_others(tmp_path):
    settings = Settings(home=tmp_path)
    keys = load_master_keys(settings)
    path = key_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_keys(settings).current == keys.current  # stable across runs
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_keys(settings)


def test_master_key_from_environment_must_be_32_bytes_of_base64(tmp_path):
    good = base64.b64encode(os.urandom(32)).decode()
    assert len(load_master_keys(Settings(home=tmp_path, master_key=good)).current) == 32
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(MasterKeyError):
            load_master_keys(Settings(home=tmp_path, master_key=bad))
    assert not key_file(Settings(home=tmp_path)).exists()


def test_tenant_key_rotation_rewraps_subject_keys_and_keeps_data_readable(committed_db, home):
    db = committed_db
    with platform_session(db) as session:
        tenant = tenancy.create_tenant(session, db.keyring, home, "rot", "Rotating")
    ids = [_create(db, tenant, schemas.PatronCreate(name=f"P{i}")).id for i in range(5)]
    with db.keyring.engine.connect() as conn:
        before = dict(
            conn.execute(
                select(subject_keys.c.subject_id, subject_keys.c.wrapped).where(subject_keys.c.tenant_id == tenant.id)
            ).all()
        )
    with tenant_session(db, tenant.id) as session:
        stored_before = session.execute(text("SELECT id, name FROM patrons ORDER BY id")).all()

    assert db.keyring.rotate_tenant_key(tenant.id, batch=2) == 6  # five patrons and the tenant's own key
    db.keyring._subject_cache.clear()

    with db.keyring.engine.connect() as conn:
        after = conn.execute(select(subject_keys).where(subject_keys.c.tenant_id == tenant.id)).all()
        versions = conn.execute(
            select(tenant_keys.c.version, tenant_keys.c.wrapped.is_(None))
            .where(tenant_keys.c.tenant_id == tenant.id, tenant_keys.c.purpose == "data")
            .order_by(tenant_keys.c.version)
        ).all()
    assert all(row.tenant_key_version == 2 and row.wrapped != before[row.subject_id] for row in after)
    assert versions == [(1, True), (2, False)]  # the old tenant key is destroyed
    with tenant_session(db, tenant.id) as session:
        assert (
            session.execute(text("SELECT id, name FROM patrons ORDER BY id")).all() == stored_before
        )  # no re-encryption
        assert [records.read(session, records.PATRONS, i).name for i in ids] == [f"P{i}" for i in range(5)]


def test_master_key_rotation_resumes_after_a_crash(committed_db, admin_url, database_urls, tmp_path, monkeypatch):
    """Crash after the re-wrap but before the key file is replaced: both keys load, a second run finishes."""
    from tests.conftest import TEST_DATABASE

    home = tmp_path / "rotating"
    settings = Settings(
        home=home, database_url=admin_url.render_as_string(hide_password=False), database_name=TEST_DATABASE
    )
    original = committed_db.master
    key_file(settings).parent.mkdir(parents=True)
    from bookwarden.crypto.master import write_key_file

    write_key_file(key_file(settings), original.current)
    with platform_session(committed_db) as session:
        tenant = tenancy.create_tenant(session, committed_db.keyring, home, "mk", "Master rotation")
    ada = _create(committed_db, tenant)

    def power_cut(*_args):
        raise OSError("power cut")

    real_provision = rotation.provision.provision
    monkeypatch.setattr(rotation.provision, "provision", power_cut)
    try:
        with pytest.raises(OSError, match="power cut"):
            rotation.rotate_master(settings)
        both = load_master_keys(settings)
        assert len(both.keys) == 2 and both.current_id == original.current_id
        monkeypatch.setattr(rotation.provision, "provision", real_provision)
        rotation.rotate_master(settings)
        rotated = load_master_keys(settings)
        assert rotated.current_id != original.current_id and len(rotated.keys) == 1

        from bookwarden.db.session import Database

        fresh = Database.open(provision.database_urls(admin_url, TEST_DATABASE, rotated.current), rotated, pool_size=1)
        try:
            with tenant_session(fresh, tenant.id) as session:
                assert records.read(session, records.PATRONS, ada.id).email == "Ada@Example.org"
        finally:
            fresh.dispose()
    finally:
        # Give every role its original password back (they are derived from the master key).
        provision.provision(admin_url, TEST_DATABASE, original.current)
        committed_db.keyring.rewrap_under_master(
            type(original)(original.current_id, {**load_master_keys(settings).keys, **original.keys})
        )
        committed_db.keyring.master = original


def test_a_backup_taken_before_a_shred_cannot_be_read_after_it(committed_db, db, admin_url, home, client_for):
    """pg_dump the data database, delete (shred) the patron, restore the dump: the fields stay ciphertext."""
    # The API answers in the test's rolled-back transaction (`db`); the tenant and the dump are committed.
    app_db, db = db, committed_db
    with platform_session(db) as session:
        tenant = tenancy.create_tenant(session, db.keyring, home, "shred", "Shredding")
    ada = _create(db, tenant)
    with restored_dump(admin_url, "scratch") as backup:
        assert "Ada" not in backup.dump and "subject_keys" not in backup.dump and "tenant_keys" not in backup.dump
        restored = backup.conn.execute("SELECT name, email FROM patrons WHERE id = %s", (ada.id,)).fetchone()

        def read_restored() -> str:
            key = db.keyring.subject_key(tenant.id, ada.id)
            return decrypt_field(key, tenant.id, "patrons", "name", ada.id, restored[0])

        assert read_restored() == "Ada Lovelace"  # control: the backup is readable while the key lives

        patron_deleted_for_good(app_db, tenant.id, client_for(tenant), client_for(tenant), ada.id)
        db.keyring._subject_cache.clear()  # as any other process that never held the key
        with pytest.raises(KeyDestroyed):
            read_restored()
        # Not even with every key that is left: the tenant's keys never opened patron fields directly.
        for _purpose, key in ((p, db.keyring.tenant_key(tenant.id, p)[1]) for p in ("data", "index")):
            with pytest.raises(DecryptionError):
                decrypt_field(key, tenant.id, "patrons", "name", ada.id, restored[0])


def test_a_tenant_key_rotation_that_crashes_midway_finishes_on_the_next_run(committed_db, home, monkeypatch):
    db = committed_db
    with platform_session(db) as session:
        tenant = tenancy.create_tenant(session, db.keyring, home, "crash", "Crashing")
    ids = [_create(db, tenant, schemas.PatronCreate(name=f"C{i}")).id for i in range(5)]
    real = db.keyring._tenant_key_version
    calls = iter(range(100))

    def dies_on_the_third_row(tenant_id, version):
        if next(calls) == 2:
            raise RuntimeError("killed")
        return real(tenant_id, version)

    monkeypatch.setattr(db.keyring, "_tenant_key_version", dies_on_the_third_row)
    with pytest.raises(RuntimeError, match="killed"):
        db.keyring.rotate_tenant_key(tenant.id, batch=2)
    monkeypatch.setattr(db.keyring, "_tenant_key_version", real)
    with db.keyring.engine.connect() as conn:
        mixed = conn.execute(select(subject_keys.c.tenant_key_version).where(subject_keys.c.tenant_id == tenant.id))
        assert sorted(v for (v,) in mixed) == [1, 1, 1, 1, 2, 2]  # one batch committed, the rest pending

    assert db.keyring.rotate_tenant_key(tenant.id, batch=2) == 4  # resumes; no third version started
    db.keyring._subject_cache.clear()
    with db.keyring.engine.connect() as conn:
        versions = conn.execute(
            select(tenant_keys.c.version, tenant_keys.c.wrapped.is_(None))
            .where(tenant_keys.c.tenant_id == tenant.id, tenant_keys.c.purpose == "data")
            .order_by(tenant_keys.c.version)
        ).all()
    assert versions == [(1, True), (2, False)]
    with tenant_session(db, tenant.id) as session:
        assert [records.read(session, records.PATRONS, i).name for i in ids] == [f"C{i}" for i in range(5)]
