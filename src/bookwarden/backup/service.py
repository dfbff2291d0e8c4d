"""Taking, listing, restoring and expiring backups.

Three kinds (models.BackupKind): the platform (the data database by the server's own `pg_dump -Fc`,
the configured file areas as a tar, the configuration without secrets), one institution (each
tenant-scoped table's rows of that institution, and its `tenants` row, COPYed inside one REPEATABLE
READ snapshot), and the keyring database, which is backed up apart and kept for a shorter time
(`keyring_backup_retention_days`): that period is how long an erased patron stays decryptable from
any backup. Each member is written through `stream.MemberWriter` (encrypted, authenticated chunks);
the signed manifest is written last.

A backup is a flow of its own (it takes a `db`): the catalogue row is committed as `running` first,
while a session-level advisory lock held on a connection of its own says that its writer lives. A
backup that fails is marked failed and its folder removed; one whose process died (the lock is free,
the row still `running`) is found by `sweep_interrupted` (run by every backup and by the retention
job) and treated the same. Only `complete` rows, whose manifest is signed, are restored or drilled.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import URL

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.audit.signing import load_signing_key, trusted_public_keys
from bookwarden.backup import snapshot
from bookwarden.backup.manifest import FORMAT, read_manifest, unwrap_backup_key, wrap_backup_key, write_manifest
from bookwarden.backup.models import Backup, BackupKind, BackupStatus
from bookwarden.backup.stream import BackupCorrupt, MemberWriter, create_private, read_member
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import canonical_json
from bookwarden.core.config import Settings
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.crypto.aead import new_key
from bookwarden.db.provision import keyring_database
from bookwarden.db.session import Database, platform_session

TARGET = "backup"
# A restore works under `<target>_restoring` (10 more characters) within PostgreSQL's 63.
RESTORE_NAME_MAX = 50
# Which members each kind holds, in the order they are written and restored.
MEMBERS = {
    BackupKind.PLATFORM: ("database", "files", "configuration"),
    BackupKind.TENANT: ("rows",),
    BackupKind.KEYRING: ("keyring",),
}
Progress = Callable[[str, int], None]  # (member, plaintext bytes just written)


def _lock_key(backup_id: uuid.UUID) -> int:
    return int.from_bytes(backup_id.bytes[:8], "big", signed=True)


def data_database(db: Database) -> str:
    return db.urls.owner.database


def create_backup(
    db: Database,
    actor: Principal,
    settings: Settings,
    admin: URL,
    kind: BackupKind,
    tenant_id: uuid.UUID | None = None,
    progress: Progress | None = None,
) -> Backup:
    """Take a backup of `kind` (an operator's request: `platform.backups.manage`)."""
    authorize(actor, Permission.PLATFORM_BACKUPS_MANAGE)
    return take_backup(db, settings, admin, kind, tenant_id, progress, actor=actor)


def take_backup(
    db: Database,
    settings: Settings,
    admin: URL,
    kind: BackupKind,
    tenant_id: uuid.UUID | None = None,
    progress: Progress | None = None,
    *,
    actor: Principal = SYSTEM,
) -> Backup:
    """The backup itself, for the operator's command and the worker's schedule alike."""
    if (kind is BackupKind.TENANT) != (tenant_id is not None):
        raise InvalidInput("a tenant backup names its institution, and only a tenant backup does")
    sweep_interrupted(db, admin)
    backup_id = uuid.uuid4()
    root = settings.resolved_backup_dir
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    directory = root / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{kind.value}-{backup_id.hex[:8]}"
    with _alive(admin, data_database(db), backup_id):
        with platform_session(db) as session:
            session.add(
                Backup(
                    id=backup_id,
                    kind=kind,
                    institution_id=tenant_id,
                    status=BackupStatus.RUNNING,
                    directory=str(directory),
                )
            )
        faults.point("backup.started")
        try:
            directory.mkdir(mode=0o700)
            manifest = _write(db, settings, admin, kind, tenant_id, backup_id, directory, progress)
            faults.point("backup.members_written")
            manifest_bytes = write_manifest(directory, manifest, load_signing_key(settings))
            faults.point("backup.manifest_written")
        except BaseException as exc:
            _fail(db, backup_id, directory, exc)
            raise
        with platform_session(db) as session:
            backup = session.get(Backup, backup_id)
            backup.status = BackupStatus.COMPLETE
            backup.finished_at = datetime.now(UTC)
            backup.stored_bytes = sum(p.stat().st_size for p in directory.iterdir())
            backup.chunks = sum(len(m["chunks"]) for m in manifest["members"].values())
            backup.manifest_sha256 = _sha256(manifest_bytes)
            backup.master_key_id = manifest["master_key_id"]
            audit.record(
                session,
                Action.BACKUP_CREATED,
                (TARGET, backup_id),
                details={
                    "kind": kind.value,
                    "tenant_id": str(tenant_id) if tenant_id else None,
                    "bytes": backup.stored_bytes,
                    "chunks": backup.chunks,
                    "tables": len(manifest["tables"]),
                },
                actor=actor,
            )
    return backup


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def _alive(admin: URL, database: str, backup_id: uuid.UUID) -> Iterator[None]:
    """Hold the backup's advisory lock on a connection of its own while it is written.

    The lock dies with the connection, so with the process: a `running` row whose lock is free
    belongs to a backup that will never finish.
    """
    with psycopg.connect(snapshot.url_of(admin, database), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key(backup_id),))
        yield


def _fail(db: Database, backup_id: uuid.UUID, directory: Path, exc: BaseException) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    with platform_session(db) as session:
        backup = session.get(Backup, backup_id)
        backup.status = BackupStatus.FAILED
        backup.finished_at = datetime.now(UTC)
        backup.error = f"{type(exc).__name__}: {exc}"[:2000] or type(exc).__name__


def sweep_interrupted(db: Database, admin: URL) -> list[uuid.UUID]:
    """Mark failed, and remove the files of, every `running` backup whose writer is gone."""
    swept = []
    with platform_session(db) as session:
        running = session.scalars(select(Backup).where(Backup.status == BackupStatus.RUNNING)).all()
    if not running:
        return swept
    with psycopg.connect(snapshot.url_of(admin, data_database(db)), autocommit=True) as conn:
        for backup in running:
            key = _lock_key(backup.id)
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                continue  # still being written
            try:
                _fail(db, backup.id, Path(backup.directory), RuntimeError("interrupted: its process ended mid-backup"))
                swept.append(backup.id)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return swept


def _write(
    db: Database,
    settings: Settings,
    admin: URL,
    kind: BackupKind,
    tenant_id: uuid.UUID | None,
    backup_id: uuid.UUID,
    directory: Path,
    progress: Progress | None,
) -> dict[str, Any]:
    key = new_key()
    members: dict[str, Any] = {}

    @contextmanager
    def member(name: str) -> Iterator[MemberWriter]:
        path = directory / f"{name}.bwc"
        with create_private(path) as sink:
            writer = MemberWriter(
                sink, key, backup_id, name, progress=(lambda n: progress(name, n)) if progress else None
            )
            yield writer
            writer.close()
        members[name] = {
            "file": path.name,
            "plain_bytes": writer.plain_bytes,
            "plain_sha256": writer.plain_sha256,
            "chunks": writer.chunks,
        }

    database = keyring_database(data_database(db)) if kind is BackupKind.KEYRING else data_database(db)
    heads: dict[str, int] = {}
    with snapshot.snapshot(admin, database) as (conn, snapshot_id):
        if kind is BackupKind.TENANT:
            with member("rows") as writer:
                tables = snapshot.write_tenant_rows(conn, tenant_id, writer.write)
        else:
            with member("database" if kind is BackupKind.PLATFORM else "keyring") as writer:
                snapshot.dump(admin, database, writer.write, snapshot_id=snapshot_id)
            tables = snapshot.table_checksums(conn, snapshot.tables(conn))
        if kind is not BackupKind.KEYRING:
            rows = conn.execute(
                "SELECT tenant_id, seq FROM audit_heads WHERE %(t)s::uuid IS NULL OR tenant_id = %(t)s::uuid",
                {"t": tenant_id},
            )
            heads = {str(t): seq for t, seq in rows}
        server_version = conn.info.server_version
    if kind is BackupKind.PLATFORM:
        with member("files") as writer:
            _tar_areas(settings, writer)
        with member("configuration") as writer:
            writer.write(canonical_json(configuration_without_secrets(settings)))
    return {
        "format": FORMAT,
        "id": str(backup_id),
        "kind": kind.value,
        "tenant_id": str(tenant_id) if tenant_id else None,
        "database": database,
        "server_version": server_version,
        "created_at": datetime.now(UTC).isoformat(),
        "master_key_id": db.master.current_id,
        "wrapped_key": wrap_backup_key(db.master, backup_id, key),
        "members": members,
        "tables": tables,
        "audit_heads": heads,
    }


def _tar_areas(settings: Settings, writer: MemberWriter) -> None:
    home = settings.resolved_home
    backup_dir = settings.resolved_backup_dir
    with tarfile.open(fileobj=writer, mode="w|") as tar:
        for area in settings.backup_file_area_paths:
            if not area.exists() or area == backup_dir or backup_dir in area.parents:
                continue  # a backup never holds backups
            tar.add(area, arcname=str(area.relative_to(home)) if home in area.parents else area.name)


# Settings never written into a backup: keys, tokens, passwords (the master key above all).
SECRET_SETTINGS = frozenset({"master_key", "audit_signing_key", "metrics_token", "database_url"})


def configuration_without_secrets(settings: Settings) -> dict[str, Any]:
    values = settings.model_dump(mode="json", exclude=set(SECRET_SETTINGS))
    values["database_url_set"] = settings.database_url is not None
    return {k: v for k, v in sorted(values.items())}


# -- reading -------------------------------------------------------------------------------------


def list_backups(session, actor: Principal, kind: BackupKind | None = None, limit: int = 200) -> list[Backup]:
    authorize(actor, Permission.PLATFORM_BACKUPS_READ)
    query = select(Backup).order_by(Backup.started_at.desc()).limit(limit)
    if kind is not None:
        query = query.where(Backup.kind == kind)
    backups = list(session.scalars(query))
    audit.record(session, Action.BACKUP_LISTED, details={"count": len(backups)}, actor=actor)
    return backups


def get_backup(session, backup_id: uuid.UUID) -> Backup:
    backup = session.get(Backup, backup_id)
    if backup is None:
        raise NotFound(f"no backup {backup_id}")
    return backup


def latest_complete(session, kind: BackupKind, tenant_id: uuid.UUID | None = None) -> Backup | None:
    query = select(Backup).where(Backup.kind == kind, Backup.status == BackupStatus.COMPLETE)
    if tenant_id is not None:
        query = query.where(Backup.institution_id == tenant_id)
    return session.scalars(query.order_by(Backup.started_at.desc()).limit(1)).first()


class OpenedBackup:
    """A complete backup whose manifest verified and whose key is unwrapped: its members can be read."""

    def __init__(self, backup: Backup, settings: Settings, master) -> None:
        if backup.status != BackupStatus.COMPLETE:
            raise Conflict(f"backup {backup.id} is {backup.status}: only complete backups are read back")
        self.backup = backup
        self.directory = Path(backup.directory)
        self.manifest = read_manifest(self.directory, trusted_public_keys(settings))
        if self.manifest["id"] != str(backup.id):
            raise BackupCorrupt(f"{self.directory}: the manifest describes backup {self.manifest['id']}")
        self.key = unwrap_backup_key(master, self.manifest)

    def member(self, name: str) -> Iterator[bytes]:
        entry = self.manifest["members"][name]
        with (self.directory / entry["file"]).open("rb") as source:
            yield from read_member(source, self.key, self.backup.id, name, entry["chunks"])

    def check_all(self) -> None:
        """Read every member through (checksums and authentication); BackupCorrupt at the first fault."""
        for name in self.manifest["members"]:
            for _ in self.member(name):
                pass


# -- restoring -----------------------------------------------------------------------------------


def restore_into(opened: OpenedBackup, admin: URL, target: str, *, live_database: str, keep_owners: bool) -> None:
    """Create `target` and restore `opened` into it; then its tables must match the manifest."""
    kind = BackupKind(opened.backup.kind)
    snapshot.create_database(admin, target, owner=None if not keep_owners else snapshot.OWNER_ROLE)
    faults.point("restore.database_created")
    if kind is BackupKind.TENANT:
        # The schema comes from the live database (a tenant backup holds rows only), as it is today.
        schema = io.BytesIO()
        snapshot.dump(admin, live_database, schema.write, schema_only=True)
        snapshot.restore(admin, target, [schema.getvalue()], keep_owners=keep_owners)
        with psycopg.connect(snapshot.url_of(admin, target)) as conn:
            snapshot.load_tenant_rows(conn, opened.member("rows"))
    else:
        snapshot.restore(admin, target, opened.member(MEMBERS[kind][0]), keep_owners=keep_owners)


def table_mismatches(opened: OpenedBackup, admin: URL, database: str) -> list[str]:
    """How the restored tables differ from the manifest's row counts and checksums (empty: they match)."""
    expected: dict[str, dict[str, Any]] = opened.manifest["tables"]
    tenant = opened.manifest.get("tenant_id")
    with psycopg.connect(snapshot.url_of(admin, database)) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        found = snapshot.table_checksums(conn, expected, uuid.UUID(tenant) if tenant else None)
    problems = []
    for table, want in expected.items():
        got = found[table]
        if got["rows"] != want["rows"]:
            problems.append(f"{table}: {got['rows']} rows restored, {want['rows']} backed up")
        elif got["sha256"] != want["sha256"]:
            problems.append(f"{table}: the restored rows' checksum differs from the backup's")
    return problems


def restore_backup(
    db: Database,
    actor: Principal,
    settings: Settings,
    admin: URL,
    backup_id: uuid.UUID,
    target: str,
    files_into: Path | None = None,
) -> dict[str, Any]:
    """Restore a complete backup for real into the new database `target` (owners and grants kept)."""
    authorize(actor, Permission.PLATFORM_BACKUPS_RESTORE)
    if not target or not target.replace("_", "").isalnum() or len(target) > RESTORE_NAME_MAX:
        raise InvalidInput(
            f"--target {target!r}: a database name of letters, digits and underscores, {RESTORE_NAME_MAX} at most"
        )
    with platform_session(db) as session:
        backup = get_backup(session, backup_id)
    opened = OpenedBackup(backup, settings, db.master)
    if snapshot.database_exists(admin, target):
        raise Conflict(f"database {target} exists; restore only into a new database (nothing was changed)")
    # Restored under a name of its own and renamed once it matches the manifest, so a database named
    # `target` is always whole: a restore that dies part-way leaves only the partial one, dropped here.
    partial = restoring_name(target)
    snapshot.drop_database(admin, partial)
    restore_into(opened, admin, partial, live_database=data_database(db), keep_owners=True)
    faults.point("restore.rows_loaded")
    problems = table_mismatches(opened, admin, partial)
    if problems:
        raise BackupCorrupt(f"restored into {partial}, but it does not match the manifest: {'; '.join(problems)}")
    snapshot.rename_database(admin, partial, target)
    faults.point("restore.checked")
    extracted = 0
    if files_into is not None and "files" in opened.manifest["members"]:
        extracted = _untar(opened, files_into)
    result = {
        "backup_id": str(backup_id),
        "kind": opened.manifest["kind"],
        "target": target,
        "tables": len(opened.manifest["tables"]),
        "files_extracted": extracted,
    }
    with platform_session(db) as session:
        audit.record(session, Action.BACKUP_RESTORED, (TARGET, backup_id), details=result, actor=actor)
    return result


def restoring_name(target: str) -> str:
    """The name a restore into `target` works under until the restored tables match the manifest."""
    return f"{target}_restoring"


def _untar(opened: OpenedBackup, into: Path) -> int:
    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    stream = _BlockReader(opened.member("files"))
    count = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for entry in tar:
            tar.extract(entry, into, filter="data")
            count += 1
    return count


class _BlockReader(io.RawIOBase):
    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks, self._pending = blocks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = block
        n = min(len(buffer), len(self._pending))
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n


# -- retention -----------------------------------------------------------------------------------


def kept_by_schedule(backups: list[Backup], daily: int, weekly: int, monthly: int) -> set[uuid.UUID]:
    """Which complete backups keep-daily/weekly/monthly keeps: the newest of each of the newest N days,
    ISO weeks and months that have one (as restic's `forget --keep-*` counts them)."""
    kept: set[uuid.UUID] = set()
    newest_first = sorted(backups, key=lambda b: b.started_at, reverse=True)
    for count, period in ((daily, "%Y-%m-%d"), (weekly, "%G-W%V"), (monthly, "%Y-%m")):
        seen: set[str] = set()
        for backup in newest_first:
            bucket = backup.started_at.astimezone(UTC).strftime(period)
            if bucket not in seen and len(seen) < count:
                seen.add(bucket)
                kept.add(backup.id)
    return kept


def expire_backups(db: Database, settings: Settings, admin: URL, now: datetime | None = None) -> list[uuid.UUID]:
    """Remove expired backups: data by keep-daily/weekly/monthly (per institution for tenant backups),
    the keyring's strictly by age. Returns the ids removed."""
    sweep_interrupted(db, admin)
    now = now or datetime.now(UTC)
    with platform_session(db) as session:
        complete = list(session.scalars(select(Backup).where(Backup.status == BackupStatus.COMPLETE)))
    expired: list[Backup] = []
    groups: dict[tuple[str, uuid.UUID | None], list[Backup]] = {}
    for backup in complete:
        if backup.kind == BackupKind.KEYRING:
            if backup.started_at <= now - timedelta(days=settings.keyring_backup_retention_days):
                expired.append(backup)
        else:
            groups.setdefault((backup.kind, backup.institution_id), []).append(backup)
    for group in groups.values():
        kept = kept_by_schedule(
            group, settings.backup_keep_daily, settings.backup_keep_weekly, settings.backup_keep_monthly
        )
        expired += [b for b in group if b.id not in kept]
    for backup in expired:
        shutil.rmtree(backup.directory, ignore_errors=True)
        with platform_session(db) as session:
            row = session.get(Backup, backup.id)
            row.status, row.removed_at = BackupStatus.REMOVED, now
            audit.record(
                session,
                Action.BACKUP_REMOVED,
                (TARGET, backup.id),
                details={"kind": str(backup.kind), "started_at": backup.started_at.isoformat()},
                actor=SYSTEM,
            )
    return [b.id for b in expired]
