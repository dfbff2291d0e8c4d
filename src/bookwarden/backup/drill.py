"""Restore drills: the newest backup restored into a scratch database and checked, step by step.

Steps, each recorded with what it found (the drill stops at the first that fails):

1. `manifest`   the data backup's manifest verifies under a trusted signing key, and its key unwraps
                under the master key (a wrongly keyed backup fails here);
2. `chunks`     every chunk of every member matches its checksum and authenticates (a corrupted or
                truncated backup fails here);
3. `restore`    the dump (or the institution's rows) restores into a scratch database;
4. `tables`     every table's row count and checksum match the manifest;
5. `audit`      every restored chain verifies against the live database's signed checkpoints;
6. `keyring`    the newest keyring backup passes 1 to 4 in a scratch keyring database, and a sample
                of personal fields of the restored data decrypts with it (fields of patrons erased
                since, whose keys are gone, are counted, not failed).

The scratch databases are dropped afterwards, whatever happened. A drill that fails queues an alert
mail to the operators (`backup.alert`, retried by the queue) in the same transaction as its record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import create_engine, select
from sqlalchemy.engine import URL

from bookwarden.audit import record as audit
from bookwarden.audit.checkpoints import list_checkpoints
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.signing import TrustedKeys, trusted_public_keys
from bookwarden.audit.verify import (
    EVENT_COLUMNS,
    GENESIS_START,
    ChainVerifier,
    Start,
    links,
    prefetched,
)
from bookwarden.backup import snapshot
from bookwarden.backup.models import Backup, BackupDrill, BackupKind, DrillOutcome
from bookwarden.backup.service import (
    TARGET,
    OpenedBackup,
    data_database,
    get_backup,
    latest_complete,
    restore_into,
    table_mismatches,
)
from bookwarden.core.authorize import authorize
from bookwarden.core.config import Settings
from bookwarden.core.errors import NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.crypto.aead import DecryptionError
from bookwarden.crypto.fields import decrypt_field
from bookwarden.crypto.keyring import Keyring
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.jobs.service import enqueue

ALERT_JOB = "backup.alert"
SAMPLE = 25  # patrons whose name is decrypted from the restored data with the restored keyring

# Called with (session, drill) in the transaction that records a failed drill: the incidents area (above this
# one) registers here how it opens an incident (incidents/hooks.py), so this module never imports it.
FailureListener = Callable[[Any, BackupDrill], None]
_failure_listeners: list[FailureListener] = []


def on_failure(listener: FailureListener) -> FailureListener:
    """Register `listener` to run when a drill fails (once, whatever the imports)."""
    if listener not in _failure_listeners:
        _failure_listeners.append(listener)
    return listener


class StepFailed(Exception):
    pass


class _Steps:
    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []

    def run(self, name: str, work: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            detail = work()
        except Exception as exc:  # every failure is the drill's finding, recorded with its step
            self.done.append(
                {
                    "step": name,
                    "ok": False,
                    "detail": f"{type(exc).__name__}: {exc}"[:2000],
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
            raise StepFailed(name) from exc
        self.done.append(
            {"step": name, "ok": True, "detail": detail, "seconds": round(time.perf_counter() - started, 3)}
        )


def run_drill(
    db: Database,
    actor: Principal,
    settings: Settings,
    admin: URL,
    backup_id: uuid.UUID | None = None,
    master: MasterKeys | None = None,
) -> BackupDrill:
    """An operator's drill (`platform.backups.manage`): the newest platform backup, or the one named."""
    authorize(actor, Permission.PLATFORM_BACKUPS_MANAGE)
    return drill(db, settings, admin, backup_id, master=master, actor=actor)


def drill(
    db: Database,
    settings: Settings,
    admin: URL,
    backup_id: uuid.UUID | None = None,
    *,
    master: MasterKeys | None = None,
    actor: Principal = SYSTEM,
) -> BackupDrill:
    """Drill one backup (default: the newest complete platform backup) with the newest keyring backup."""
    master = master or db.master
    with platform_session(db) as session:
        backup = get_backup(session, backup_id) if backup_id else latest_complete(session, BackupKind.PLATFORM)
        if backup is None:
            raise NotFound("no complete platform backup to drill: take one with `bookwarden backup create`")
        if backup.kind == BackupKind.KEYRING:
            raise NotFound(
                f"backup {backup.id} is a keyring backup: drill a data backup (its keyring is drilled with it)"
            )
        keyring_backup = latest_complete(session, BackupKind.KEYRING)
        record = BackupDrill(
            backup_id=backup.id,
            keyring_backup_id=keyring_backup.id if keyring_backup else None,
            outcome=DrillOutcome.RUNNING,
            steps=[],
        )
        session.add(record)
    steps = _Steps()
    scratch = f"{data_database(db)}_drill_{record.id.hex[:12]}"
    scratch_keyring = f"{scratch}_keyring"
    failure = None
    try:
        opened = _open(steps, backup, settings, master)
        steps.run("chunks", lambda: _chunks(opened))
        steps.run("restore", lambda: _restore(opened, admin, scratch, db))
        steps.run("tables", lambda: _tables(opened, admin, scratch))
        steps.run("audit", lambda: _audit(db, admin, scratch, settings))
        if keyring_backup is None:
            steps.run("keyring", _no_keyring_backup)
        else:
            steps.run(
                "keyring", lambda: _keyring(keyring_backup, settings, master, admin, scratch, scratch_keyring, db)
            )
    except StepFailed as exc:
        failure = f"step {exc}: {steps.done[-1]['detail']}"
    finally:
        snapshot.drop_database(admin, scratch)
        snapshot.drop_database(admin, scratch_keyring)
    with platform_session(db) as session:
        row = session.get(BackupDrill, record.id)
        row.steps, row.finished_at = steps.done, datetime.now(UTC)
        row.outcome = DrillOutcome.FAILED if failure else DrillOutcome.PASSED
        row.failure = failure
        audit.record(
            session,
            Action.BACKUP_DRILLED,
            (TARGET, backup.id),
            outcome=Outcome.FAILED if failure else Outcome.SUCCEEDED,
            details={
                "drill_id": str(record.id),
                "steps": [s["step"] for s in steps.done],
                "failed_step": steps.done[-1]["step"] if failure else None,
            },
            actor=actor,
        )
        if failure:
            enqueue(session, ALERT_JOB, {"drill_id": str(record.id)})
            for listener in _failure_listeners:
                listener(session, row)
    return row


def _open(steps: _Steps, backup: Backup, settings: Settings, master: MasterKeys) -> OpenedBackup:
    opened: list[OpenedBackup] = []

    def work() -> str:
        opened.append(OpenedBackup(backup, settings, master))
        manifest = opened[0].manifest
        return f"{manifest['kind']} backup {backup.id}: signature verified, key unwrapped ({manifest['master_key_id']})"

    steps.run("manifest", work)
    return opened[0]


def _chunks(opened: OpenedBackup) -> str:
    opened.check_all()
    members = opened.manifest["members"]
    return ", ".join(f"{name}: {len(m['chunks'])} chunks" for name, m in members.items())


def _restore(opened: OpenedBackup, admin: URL, scratch: str, db: Database) -> str:
    restore_into(opened, admin, scratch, live_database=data_database(db), keep_owners=False)
    return f"restored into scratch database {scratch}"


def _tables(opened: OpenedBackup, admin: URL, database: str) -> str:
    problems = table_mismatches(opened, admin, database)
    if problems:
        raise AssertionError("; ".join(problems))
    rows = sum(t["rows"] for t in opened.manifest["tables"].values())
    return f"{len(opened.manifest['tables'])} tables, {rows} rows: counts and checksums match"


def _audit(db: Database, admin: URL, scratch: str, settings: Settings) -> str:
    """Each chain in the restored data, against the checkpoints the live database holds (signed)."""
    keys = TrustedKeys(*trusted_public_keys(settings))
    checked = events = 0
    with psycopg.connect(snapshot.url_of(admin, scratch)) as conn:
        heads = {t: (seq, bytes(h)) for t, seq, h in conn.execute("SELECT tenant_id, seq, hash FROM audit_heads")}
        for tenant_id, head in sorted(heads.items()):
            with tenant_session(db, tenant_id) as session:
                signed = [c for c in list_checkpoints(session) if c.tree_size <= head[0]]
            start = GENESIS_START
            dropped = conn.execute(
                "SELECT upto_seq, last_hash FROM audit_segment_drops WHERE tenant_id = %s ORDER BY upto_seq DESC "
                "LIMIT 1",
                (tenant_id,),
            ).fetchone()
            if dropped is not None:
                boundary = next((c for c in signed if c.tree_size == dropped[0]), None)
                if boundary is None or boundary.last_hash != bytes(dropped[1]):
                    raise AssertionError(f"tenant {tenant_id}: no signed checkpoint seals the dropped segment")
                start = Start(dropped[0], bytes(dropped[1]), boundary.tree(), "dropped segment")
            verifier = ChainVerifier(tenant_id, start, signed, keys)
            with conn.cursor(name=f"drill_audit_{tenant_id.hex}", binary=True) as cursor:
                cursor.execute(
                    f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE tenant_id = %s AND seq > %s ORDER BY seq",  # noqa: S608
                    (tenant_id, start.seq),
                )
                verifier.feed(links(prefetched(cursor)))
            report = verifier.finish(head)
            if not report.clean:
                raise AssertionError(report.summary())
            checked += 1
            events += report.events
    return f"{checked} chains, {events} events verified against the live signed checkpoints"


def _no_keyring_backup() -> str:
    raise AssertionError("no complete keyring backup: the data could not be decrypted after a loss")


def _keyring(
    backup: Backup,
    settings: Settings,
    master: MasterKeys,
    admin: URL,
    scratch: str,
    scratch_keyring: str,
    db: Database,
) -> str:
    opened = OpenedBackup(backup, settings, master)
    restore_into(opened, admin, scratch_keyring, live_database=data_database(db), keep_owners=False)
    problems = table_mismatches(opened, admin, scratch_keyring)
    if problems:
        raise AssertionError("keyring backup: " + "; ".join(problems))
    decrypted, erased = sample_fields(admin, scratch, scratch_keyring, master)
    return (
        f"keyring backup {backup.id} restored; {decrypted} sampled fields decrypted, {erased} of patrons erased since"
    )


def sample_fields(
    admin: URL,
    data: str,
    keyring_database: str,
    master: MasterKeys,
    limit: int = SAMPLE,
    patron_ids: list[uuid.UUID] | None = None,
) -> tuple[int, int]:
    """(decrypted, keyless): patrons' names in the restored `data` opened with the restored keyring.

    DecryptionError (a key that unwraps to the wrong bytes, a master key that is not the one) fails.
    """
    engine = create_engine(admin.set(database=keyring_database), pool_size=1, max_overflow=0)
    try:
        keyring = Keyring(engine, master, cache_size=0)
        with psycopg.connect(snapshot.url_of(admin, data)) as conn:
            if patron_ids is None:
                rows = conn.execute(
                    "SELECT tenant_id, id, name FROM patrons ORDER BY random() LIMIT %s", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT tenant_id, id, name FROM patrons WHERE id = ANY(%s)", (patron_ids,)
                ).fetchall()
        decrypted = keyless = 0
        for tenant_id, patron_id, name in rows:
            key = keyring.subject_keys(tenant_id, [patron_id]).get(patron_id)
            if key is None:
                keyless += 1
                continue
            try:
                decrypt_field(key, tenant_id, "patrons", "name", patron_id, bytes(name))
            except DecryptionError:
                raise AssertionError(f"patron {patron_id} of tenant {tenant_id}: the name does not decrypt") from None
            decrypted += 1
        return decrypted, keyless
    finally:
        engine.dispose()


def list_drills(session, actor: Principal, limit: int = 100) -> list[BackupDrill]:
    authorize(actor, Permission.PLATFORM_BACKUPS_READ)
    drills = list(session.scalars(select(BackupDrill).order_by(BackupDrill.started_at.desc()).limit(limit)))
    audit.record(session, Action.BACKUP_DRILLS_LISTED, details={"count": len(drills)}, actor=actor)
    return drills


__all__ = ["ALERT_JOB", "drill", "list_drills", "run_drill", "sample_fields"]
