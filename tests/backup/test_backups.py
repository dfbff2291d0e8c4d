"""Backups on the real embedded PostgreSQL: taken, checked, drilled, restored, expired; and each way a
backup can go bad (a corrupted chunk, a cut file, another master key, a crash mid-way) caught.

Backups read committed data (pg_dump sees nothing of a test's open transaction), so these tests use
`committed_db` and real commits."""

from __future__ import annotations

import io
import json
import os
import stat
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from bookwarden.audit.events import Action
from bookwarden.backup import drill as drills
from bookwarden.backup import service, snapshot, stream
from bookwarden.backup.models import Backup, BackupKind, BackupStatus, DrillOutcome
from bookwarden.core.config import get_settings
from bookwarden.core.errors import Conflict, Forbidden, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.crypto.aead import new_key
from bookwarden.crypto.master import MasterKeys, key_id
from bookwarden.db.session import PLATFORM, platform_session, tenant_session
from bookwarden.jobs.models import Job
from bookwarden.jobs.worker import Worker
from tests.conftest import TEST_DATABASE
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import acting

OPERATOR = acting(
    None, Permission.PLATFORM_BACKUPS_MANAGE, Permission.PLATFORM_BACKUPS_READ, Permission.PLATFORM_BACKUPS_RESTORE
)


def _take(db, settings, admin_url, kind=BackupKind.PLATFORM, tenant_id=None) -> Backup:
    return service.create_backup(db, OPERATOR, settings, admin_url, kind, tenant_id)


def _scratch_gone(admin_url, prefix: str) -> bool:
    with psycopg.connect(snapshot.url_of(admin_url, "postgres")) as conn:
        return not conn.execute("SELECT 1 FROM pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchone()


def test_a_platform_backup_is_encrypted_signed_private_and_passes_its_drill(committed_db, settings, admin_url, world):
    data = _take(committed_db, settings, admin_url)
    keys = _take(committed_db, settings, admin_url, BackupKind.KEYRING)

    assert data.status == BackupStatus.COMPLETE and keys.status == BackupStatus.COMPLETE
    directory = Path(data.directory)
    assert directory.parent == settings.resolved_backup_dir
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Nothing of the data is readable in the files: not a patron's ciphertext, not a table name.
    dump_file = (directory / "database.bwc").read_bytes()
    assert b"patrons" not in dump_file and b"PGDMP" not in dump_file
    manifest = json.loads((directory / "manifest.json").read_bytes())["manifest"]
    assert set(manifest["members"]) == {"database", "files", "configuration"}
    assert manifest["tables"]["patrons"]["rows"] == 10
    assert manifest["master_key_id"] == committed_db.master.current_id
    # The master key is never in a backup, nor any other secret of the configuration.
    opened = service.OpenedBackup(data, settings, committed_db.master)
    configuration = b"".join(opened.member("configuration"))
    assert b"master_key" not in configuration and committed_db.master.current.hex().encode() not in configuration
    assert json.loads(configuration)["keyring_backup_retention_days"] == 35

    result = drills.run_drill(committed_db, OPERATOR, settings, admin_url)

    assert result.outcome == DrillOutcome.PASSED, result.steps
    assert [s["step"] for s in result.steps] == ["manifest", "chunks", "restore", "tables", "audit", "keyring"]
    assert "10 sampled fields decrypted" in result.steps[-1]["detail"]
    assert "3 chains" in result.steps[4]["detail"]  # two institutions and the platform's own
    assert _scratch_gone(admin_url, f"{TEST_DATABASE}_drill_")


def _corrupt(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _failed_step(db, settings, admin_url, master=None):
    result = drills.drill(db, settings, admin_url, master=master)
    assert result.outcome == DrillOutcome.FAILED
    with platform_session(db) as session:
        alerts = session.query(Job).filter(Job.kind == drills.ALERT_JOB).all()
    assert [a.payload["drill_id"] for a in alerts] == [str(result.id)]  # the operators are told
    return result.steps[-1]["step"], result.failure


def test_a_corrupted_chunk_fails_its_drill(committed_db, settings, admin_url, world):
    data = _take(committed_db, settings, admin_url)
    _take(committed_db, settings, admin_url, BackupKind.KEYRING)
    _corrupt(Path(data.directory) / "database.bwc", len(stream.MAGIC) + 100)

    step, failure = _failed_step(committed_db, settings, admin_url)

    assert step == "chunks" and "chunk 0 does not match its checksum" in failure


def test_a_truncated_backup_fails_its_drill(committed_db, settings, admin_url, world):
    data = _take(committed_db, settings, admin_url)
    _take(committed_db, settings, admin_url, BackupKind.KEYRING)
    path = Path(data.directory) / "database.bwc"
    path.write_bytes(path.read_bytes()[:-10])

    step, failure = _failed_step(committed_db, settings, admin_url)

    assert step == "chunks" and "truncated inside chunk" in failure


def test_a_failed_drill_is_mailed_to_the_operators(committed_db, settings, admin_url, world, smtp_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("BOOKWARDEN_OPERATOR_ALERT_EMAILS", "ops@platform.example, ciso@platform.example")
    get_settings.cache_clear()
    try:
        data = _take(committed_db, settings, admin_url)
        _take(committed_db, settings, admin_url, BackupKind.KEYRING)
        path = Path(data.directory) / "database.bwc"
        path.write_bytes(path.read_bytes()[:-10])
        result = drills.drill(committed_db, settings, admin_url)
        worker = Worker(committed_db, "alerts")
        while worker.run_one():
            pass
    finally:
        get_settings.cache_clear()

    [mail] = [m for m in smtp_server.messages if "restore drill FAILED" in m.message["Subject"]]
    assert sorted(mail.recipients) == ["ciso@platform.example", "ops@platform.example"]
    body = mail.message.get_content()
    assert str(result.id) in body and "truncated inside chunk" in body
    assert mail.message["Auto-Submitted"] == "auto-generated"


def test_a_wrongly_keyed_backup_fails_its_drill(committed_db, settings, admin_url, world):
    _take(committed_db, settings, admin_url)
    _take(committed_db, settings, admin_url, BackupKind.KEYRING)
    other = new_key()

    step, failure = _failed_step(committed_db, settings, admin_url, MasterKeys(key_id(other), {key_id(other): other}))

    assert step == "manifest" and "not loaded" in failure


def test_an_altered_manifest_fails_its_drill(committed_db, settings, admin_url, world):
    data = _take(committed_db, settings, admin_url)
    _take(committed_db, settings, admin_url, BackupKind.KEYRING)
    path = Path(data.directory) / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"rows":10', b'"rows":11'))

    step, failure = _failed_step(committed_db, settings, admin_url)

    assert step == "manifest" and "signature does not verify" in failure


def test_a_chunk_cut_at_a_chunk_boundary_or_reordered_is_detected(monkeypatch):
    monkeypatch.setattr(stream, "CHUNK_BYTES", 1024)
    key, backup_id = new_key(), uuid.uuid4()
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"member-{backup_id}"
    with stream.create_private(path) as sink:
        writer = stream.MemberWriter(sink, key, backup_id, "database")
        writer.write(os.urandom(5000))
        writer.close()
    whole = path.read_bytes()
    path.unlink()
    records, at = [], len(stream.MAGIC)
    while at < len(whole):
        length = int.from_bytes(whole[at : at + 4], "big")
        records.append(whole[at : at + 17 + length])
        at += 17 + length
    assert len(records) == 5

    def read(data: bytes, checksums=None) -> bytes:
        return b"".join(stream.read_member(io.BytesIO(data), key, backup_id, "database", checksums))

    assert len(read(whole, writer.chunks)) == 5000
    cut = stream.MAGIC + b"".join(records[:3])  # whole chunks, none final: no checksum list needed to see it
    with pytest.raises(stream.BackupCorrupt, match="truncated after chunk 2"):
        read(cut)
    swapped = stream.MAGIC + records[1] + records[0] + b"".join(records[2:])
    with pytest.raises(stream.BackupCorrupt, match="chunk 0 fails authentication"):
        read(swapped)
    with pytest.raises(stream.BackupCorrupt, match="fails authentication"):
        b"".join(stream.read_member(io.BytesIO(whole), key, uuid.uuid4(), "database"))


def test_a_backup_that_fails_mid_way_is_marked_failed_and_its_files_removed(
    committed_db, settings, admin_url, world, monkeypatch
):
    real = stream.MemberWriter._seal
    sealed = []

    def crash(self, plain, *, final):
        sealed.append(1)
        if len(sealed) == 2:
            raise OSError("disk full")
        return real(self, plain, final=final)

    monkeypatch.setattr(stream.MemberWriter, "_seal", crash)
    with pytest.raises(OSError, match="disk full"):
        _take(committed_db, settings, admin_url)

    with platform_session(committed_db) as session:
        (row,) = session.query(Backup).all()
    assert row.status == BackupStatus.FAILED and "disk full" in row.error
    assert not Path(row.directory).exists()
    with platform_session(committed_db) as session:
        assert service.latest_complete(session, BackupKind.PLATFORM) is None


def test_a_backup_whose_process_died_never_counts_and_is_swept(committed_db, settings, admin_url, world):
    # A writer that dies: its row is committed as running and its folder half written, then its
    # lock connection goes away with it (here: the context is left without finishing).
    backup_id = uuid.uuid4()
    directory = settings.resolved_backup_dir / f"dead-{backup_id.hex[:8]}"
    directory.mkdir(parents=True)
    (directory / "database.bwc").write_bytes(stream.MAGIC + b"partial")
    with service._alive(admin_url, TEST_DATABASE, backup_id):
        with platform_session(committed_db) as session:
            session.add(
                Backup(id=backup_id, kind=BackupKind.PLATFORM, status=BackupStatus.RUNNING, directory=str(directory))
            )
        # While its writer lives, a sweep leaves it alone.
        assert service.sweep_interrupted(committed_db, admin_url) == []

    assert service.sweep_interrupted(committed_db, admin_url) == [backup_id]
    with platform_session(committed_db) as session:
        row = session.get(Backup, backup_id)
    assert row.status == BackupStatus.FAILED and "interrupted" in row.error
    assert not directory.exists()
    with pytest.raises(NotFound):
        drills.drill(committed_db, settings, admin_url)


def test_a_tenant_backup_holds_one_institution_and_restores_it(committed_db, settings, admin_url, world):
    ours, theirs = world.tenants
    backup = _take(committed_db, settings, admin_url, BackupKind.TENANT, ours)
    _take(committed_db, settings, admin_url, BackupKind.KEYRING)
    manifest = service.OpenedBackup(backup, settings, committed_db.master).manifest
    assert manifest["tables"]["patrons"]["rows"] == 5 and manifest["tables"]["tenants"]["rows"] == 1
    assert list(manifest["audit_heads"]) == [str(ours)]
    assert "backups" not in manifest["tables"] and "jobs" not in manifest["tables"]  # platform tables stay out

    result = drills.drill(committed_db, settings, admin_url, backup.id)
    assert result.outcome == DrillOutcome.PASSED, result.steps

    target = f"{TEST_DATABASE}_restored_tenant"
    try:
        service.restore_backup(committed_db, OPERATOR, settings, admin_url, backup.id, target)
        with psycopg.connect(snapshot.url_of(admin_url, target)) as conn:
            tenants = {row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM patrons")}
        assert tenants == {ours}  # not one row of the other institution
        with pytest.raises(Conflict, match="exists"):
            service.restore_backup(committed_db, OPERATOR, settings, admin_url, backup.id, target)
    finally:
        snapshot.drop_database(admin_url, target)
    del theirs


def test_restore_for_real_keeps_owners_and_leaves_a_record(committed_db, settings, admin_url, world, tmp_path):
    backup = _take(committed_db, settings, admin_url)
    target = f"{TEST_DATABASE}_restored"
    try:
        result = service.restore_backup(
            committed_db, OPERATOR, settings, admin_url, backup.id, target, files_into=tmp_path / "files"
        )
        assert result["files_extracted"] >= 1
        assert any(p.name == "package.bin" for p in (tmp_path / "files").rglob("*"))
        with psycopg.connect(snapshot.url_of(admin_url, target)) as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'patrons'").fetchone()[0]
        assert owner == "bookwarden_owner"
    finally:
        snapshot.drop_database(admin_url, target)
    with tenant_session(committed_db, PLATFORM) as session:
        actions = (
            session.execute(text("SELECT action FROM audit_events WHERE target_id = :b"), {"b": backup.id})
            .scalars()
            .all()
        )
    assert Action.BACKUP_RESTORED.value in actions and Action.BACKUP_CREATED.value in actions


def test_backups_need_their_permissions(committed_db, settings, admin_url):
    reader = acting(None, Permission.PLATFORM_BACKUPS_READ)
    with pytest.raises(Forbidden):
        service.create_backup(committed_db, reader, settings, admin_url, BackupKind.PLATFORM)
    with pytest.raises(Forbidden):
        drills.run_drill(committed_db, reader, settings, admin_url)
    with pytest.raises(Forbidden):
        service.restore_backup(committed_db, reader, settings, admin_url, uuid.uuid4(), "x")
    with platform_session(committed_db) as session, pytest.raises(Forbidden):
        service.list_backups(session, acting(None, Permission.PLATFORM_USAGE_READ))


def _row(db, kind, started_at, tenant_id=None) -> uuid.UUID:
    with platform_session(db) as session:
        row = Backup(
            kind=kind,
            institution_id=tenant_id,
            status=BackupStatus.COMPLETE,
            directory="/nonexistent",
            started_at=started_at,
            manifest_sha256="0" * 64,
        )
        session.add(row)
        session.flush()
        return row.id


def test_retention_keeps_daily_weekly_monthly_and_the_keyring_only_its_days(committed_db, settings, admin_url):
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    daily = {n: _row(committed_db, BackupKind.PLATFORM, now - timedelta(days=n)) for n in range(0, 400)}
    keyring = {n: _row(committed_db, BackupKind.KEYRING, now - timedelta(days=n)) for n in (0, 34, 35, 36, 90)}

    removed = set(service.expire_backups(committed_db, settings, admin_url, now=now))

    kept_data = {n for n, b in daily.items() if b not in removed}
    # 7 newest days; the newest of 4 ISO weeks (Sundays, and today's Monday); the newest of 12 months.
    assert set(range(7)) <= kept_data
    assert len(kept_data) <= 7 + 4 + 12 and len(kept_data) > 0
    assert max(kept_data) > 300  # a monthly one reaches back almost a year
    assert {n for n, b in keyring.items() if b not in removed} == {0, 34}
    with platform_session(committed_db) as session:
        assert session.get(Backup, keyring[90]).status == BackupStatus.REMOVED


def test_the_worker_declares_its_backup_duties(committed_db):
    from bookwarden.backup import jobs
    from bookwarden.jobs.models import JobSchedule

    jobs.declare_schedules(committed_db)
    with platform_session(committed_db) as session:
        names = {s.name for s in session.query(JobSchedule).all()}
    assert {"backup.platform", "backup.keyring", "backup.drill", "backup.retention"} <= names


def test_measured_backup_time_of_the_test_database(committed_db, settings, admin_url, world, capsys):
    started = time.perf_counter()
    backup = _take(committed_db, settings, admin_url)
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nplatform backup of the test database: {backup.stored_bytes:,} bytes in {seconds:.2f} s")
    assert backup.status == BackupStatus.COMPLETE


CRASHING_BACKUP = """
import base64, os, sys, time
from pathlib import Path
from sqlalchemy.engine import make_url
from bookwarden import areas
areas.load()
from bookwarden.backup import service, stream
from bookwarden.backup.models import BackupKind
from bookwarden.core.config import Settings
from bookwarden.crypto.master import MasterKeys, key_id
from bookwarden.db import provision
from bookwarden.db.session import Database

master = base64.b64decode(os.environ["CRASH_MASTER"])
keys = MasterKeys(key_id(master), {key_id(master): master})
admin = make_url(os.environ["CRASH_ADMIN"])
db = Database.open(provision.database_urls(admin, os.environ["CRASH_DATABASE"], master), keys, pool_size=1)
real = stream.MemberWriter._seal

def stall(self, plain, *, final):
    real(self, plain, final=final)
    self.sink.flush()
    print("sealed", flush=True)
    time.sleep(120)

stream.MemberWriter._seal = stall
settings = Settings(home=Path(os.environ["CRASH_HOME"]), backup_dir=Path(os.environ["CRASH_BACKUPS"]))
service.take_backup(db, settings, admin, BackupKind.PLATFORM)
"""


def test_a_backup_process_killed_mid_way_never_counts_and_is_swept(committed_db, settings, admin_url, world):
    import base64
    import signal
    import subprocess
    import sys

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "CRASH_MASTER": base64.b64encode(committed_db.master.current).decode(),
        "CRASH_ADMIN": admin_url.render_as_string(hide_password=False),
        "CRASH_DATABASE": TEST_DATABASE,
        "CRASH_HOME": str(settings.resolved_home),
        "CRASH_BACKUPS": str(settings.resolved_backup_dir),
    }
    with subprocess.Popen([sys.executable, "-c", CRASHING_BACKUP], env=env, stdout=subprocess.PIPE) as proc:
        assert proc.stdout.readline() == b"sealed\n"  # the first chunk is on disk, the backup is under way
        with platform_session(committed_db) as session:
            (running,) = session.query(Backup).all()
        assert running.status == BackupStatus.RUNNING and Path(running.directory).exists()
        assert service.sweep_interrupted(committed_db, admin_url) == []  # alive: left alone
        proc.send_signal(signal.SIGKILL)
    for _ in range(50):  # the server notices the dead connection and frees its lock
        swept = service.sweep_interrupted(committed_db, admin_url)
        if swept:
            break
        time.sleep(0.1)

    assert swept == [running.id]
    with platform_session(committed_db) as session:
        row = session.get(Backup, running.id)
    assert row.status == BackupStatus.FAILED and not Path(row.directory).exists()
