"""Offboarding an institution: its final export, a grace period, then its data destroyed and certified.

One operator asks (`request_offboarding`), another approves (maker-checker: the approval kind
`offboard_tenant`, backup/approvals.py; the same person never both, through any credential). The
institution's administrators are mailed when it is asked, when its export is ready (with the link and the
date of destruction) and when the destruction starts. Then `advance` walks the steps, each recorded in the
`offboardings` row once done, so a run that dies anywhere is carried on by the next (the worker's hourly
job, or `bookwarden tenant offboard T --resume`), and nothing is done twice that would show:

1. approved   the approval, read from the institution's queue, is copied onto the row;
2. exported   the institution is suspended (its data frozen), a full export of its data (every table's
              rows as stored, and its patrons decrypted) is written, and a signed link to it that expires
              is mailed to its administrators; the grace period starts (an operator can cancel until then);
3. keys_destroyed   after the grace period: the administrators told, every key of the institution
              destroyed in the keyring (Keyring.destroy_tenant), which makes its data unreadable everywhere;
4. rows_deleted   every row of every table with a tenant_id column, found in the catalogue (so a new
              table cannot be missed), in the data and the keyring databases, and its `tenants` row;
5. files_wiped    its file area, the export and its tenant backups overwritten (backup/wipe.py) and removed;
6. certified  the certificate of destruction (backup/certificate.py) signed and stored: exactly once.

Notices are at least once: a run that dies after mailing and before recording mails again (the
destruction notice with the same Message-ID, so a mail client shows one). Every step is audited in the
platform chain; asking and the export's notice also in the institution's own trail, until it is deleted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import structlog
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.audit.signing import load_signing_key
from bookwarden.backup import snapshot, wipe
from bookwarden.backup.certificate import FORMAT, sign_certificate
from bookwarden.backup.models import (
    CANCELLABLE,
    OPEN,
    Backup,
    BackupKind,
    BackupStatus,
    Offboarding,
    OffboardingState,
)
from bookwarden.backup.service import data_database
from bookwarden.backup.stream import create_private
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import canonical_json
from bookwarden.core.config import Settings
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.keyring import subject_keys, tenant_keys
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.provision import keyring_database
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity.accounts.service import holders_to_mail
from bookwarden.library.export import every_patron
from bookwarden.notify.delivery import send_to_operators
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import mail_time, queue_mail
from bookwarden.tenancy.models import Tenant, TenantStatus
from bookwarden.tenancy.service import get_tenant

log = structlog.get_logger()
TARGET = "offboarding"
EXPORT_FILE = "export.zip"
# Who is told: the institution's own administrators, decided by the permission (never a role's name).
ADMINISTRATORS = Permission.ACCOUNTS_MANAGE


class ExportLinkInvalid(BookwardenError):
    """The one answer for every export link that cannot be used, whatever the reason."""

    slug, status, title = "invalid-link", 401, "Link not valid"

    def __init__(self) -> None:
        super().__init__(
            "this export link cannot be used: it has expired, was not sent by us, or the export was destroyed or "
            "cancelled; ask the platform operator"
        )


# -- asking, approving, cancelling ----------------------------------------------------------------


def checked_params(session: TenantSession, params: dict) -> dict:
    """What an offboarding approval binds: the institution, the grace period, the overwrite method."""
    if params.get("tenant_id") != str(session.tenant_id):
        raise InvalidInput("tenant_id: the institution being offboarded (the request's own)")
    grace = params.get("grace_days")
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
        raise InvalidInput("grace_days: a whole number of days, 0 or more")
    try:
        method = wipe.method_named(str(params.get("wipe_method")))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return {"tenant_id": str(session.tenant_id), "grace_days": grace, "wipe_method": method.name}


def request_offboarding(
    db: Database,
    actor: Principal,
    settings: Settings,
    tenant_ref: UUID | str,
    *,
    grace_days: int | None = None,
    wipe_method: str | None = None,
) -> Offboarding:
    """Ask for an institution's offboarding; its administrators are told. Nothing happens until another
    operator approves."""
    authorize(actor, Permission.PLATFORM_TENANTS_OFFBOARD)
    with platform_session(db) as session:
        tenant = get_tenant(session, tenant_ref)
        _refuse_if_open(session, tenant.id)
        tenant_id, slug, name = tenant.id, tenant.slug, tenant.name
    offboarding_id = uuid.uuid4()
    params = {
        "tenant_id": str(tenant_id),
        "grace_days": settings.offboarding_grace_days if grace_days is None else grace_days,
        "wipe_method": wipe_method or settings.offboarding_wipe_method,
    }
    with tenant_session(db, tenant_id) as session:
        approval = approvals.ask(session, actor, SensitiveAction.OFFBOARD_TENANT, params)
        params = approval.params
        _mail_administrators(
            session,
            "offboarding_requested.txt",
            f"{name}: offboarding from Bookwarden asked",
            {
                "institution": name,
                "offboarding_id": offboarding_id,
                "when": mail_time(datetime.now(UTC)),
                "grace_days": params["grace_days"],
                "method": wipe.method_named(params["wipe_method"]).describe(),
            },
        )
        record(session, Action.OFFBOARDING_REQUESTED, (TARGET, offboarding_id), details=params, actor=actor)
    with platform_session(db) as session:
        _refuse_if_open(session, tenant_id)
        row = Offboarding(
            id=offboarding_id,
            institution_id=tenant_id,
            institution_slug=slug,
            institution_name=name,
            state=OffboardingState.REQUESTED,
            wipe_method=params["wipe_method"],
            grace_days=params["grace_days"],
            approval_id=approval.id,
            requested_by=actor.id,
            requested_by_person=actor.person,
            steps={},
        )
        session.add(row)
        session.flush()
        record(session, Action.OFFBOARDING_REQUESTED, (TARGET, row.id), details=params, actor=actor)
    return row


def _refuse_if_open(session, tenant_id: UUID) -> None:
    found = session.scalar(
        select(Offboarding.id).where(Offboarding.institution_id == tenant_id, Offboarding.state.in_(list(OPEN)))
    )
    if found is not None:
        raise Conflict(f"the institution's offboarding {found} is under way already; cancel it or let it finish")


def approve_offboarding(db: Database, approver: Principal, offboarding_id: UUID) -> Offboarding:
    """A second operator approves (never the one who asked, through any credential); the steps may start."""
    authorize(approver, Permission.PLATFORM_TENANTS_OFFBOARD)
    row = _get(db, offboarding_id)
    if row.state != OffboardingState.REQUESTED:
        raise Conflict(f"offboarding {offboarding_id} is {row.state}: only a requested one is approved")
    with tenant_session(db, row.institution_id) as session:
        approvals.approve(session, approver, row.approval_id)
    _take_approval(db, row.id, actor=approver)
    return _get(db, offboarding_id)


def cancel_offboarding(db: Database, actor: Principal, settings: Settings, offboarding_id: UUID) -> Offboarding:
    """Stop an offboarding before its destruction starts: the export is wiped, the institution resumed."""
    authorize(actor, Permission.PLATFORM_TENANTS_OFFBOARD)
    with platform_session(db) as session:
        row = _locked(session, offboarding_id)
        if row.state not in CANCELLABLE or "destroy" in row.steps:
            raise Conflict(f"offboarding {offboarding_id} is {row.state}: its destruction has started or it is over")
        wipe.wipe_tree(export_dir(settings, row.id), wipe.method_named(row.wipe_method))
        row.state, row.cancelled_by, row.cancelled_at = OffboardingState.CANCELLED, actor.id, datetime.now(UTC)
        tenant = session.get(Tenant, row.institution_id)
        if tenant is not None and tenant.status is TenantStatus.SUSPENDED and tenant.suspended_reason == _reason(row):
            tenant.status, tenant.suspended_reason, tenant.suspended_at = TenantStatus.ACTIVE, None, None
            record(session, Action.TENANT_RESUMED, ("tenant", tenant.id), actor=actor)
        record(session, Action.OFFBOARDING_CANCELLED, (TARGET, row.id), details={"was": row.state}, actor=actor)
    return _get(db, offboarding_id)


def list_offboardings(session, actor: Principal) -> list[Offboarding]:
    authorize(actor, Permission.PLATFORM_TENANTS_OFFBOARD)
    found = list(session.scalars(select(Offboarding).order_by(Offboarding.requested_at.desc()).limit(500)))
    ids = [row.id for row in found]
    record(session, Action.OFFBOARDING_LISTED, (TARGET, None), details={"ids": ids, "count": len(ids)}, actor=actor)
    return found


def open_offboarding(session, actor: Principal, ref: str) -> Offboarding:
    """The open offboarding of an institution (its id or slug; its rows may be gone already), or by its own id."""
    authorize(actor, Permission.PLATFORM_TENANTS_OFFBOARD)
    query = select(Offboarding).where(Offboarding.state.in_(list(OPEN)))
    try:
        wanted = UUID(ref)
        query = query.where((Offboarding.id == wanted) | (Offboarding.institution_id == wanted))
    except ValueError:
        query = query.where(Offboarding.institution_slug == ref)
    found = session.scalars(query).first()
    if found is None:
        raise NotFound(f"no offboarding under way for {ref}")
    return found


def read_certificate(session, actor: Principal, offboarding_id: UUID) -> bytes:
    """The signed certificate of destruction, as issued (what `bookwarden certificate verify` checks)."""
    authorize(actor, Permission.PLATFORM_TENANTS_OFFBOARD)
    row = session.get(Offboarding, offboarding_id)
    if row is None:
        raise NotFound(f"no offboarding {offboarding_id}")
    if row.certificate is None:
        raise Conflict(f"offboarding {offboarding_id} is {row.state}: its certificate is issued when it is done")
    record(session, Action.OFFBOARDING_CERTIFICATE_READ, (TARGET, row.id), actor=actor)
    return row.certificate.encode()


def _get(db: Database, offboarding_id: UUID) -> Offboarding:
    with platform_session(db) as session:
        row = session.get(Offboarding, offboarding_id)
        if row is None:
            raise NotFound(f"no offboarding {offboarding_id}")
        session.expunge(row)
    return row


def _locked(session, offboarding_id: UUID) -> Offboarding:
    row = session.get(Offboarding, offboarding_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no offboarding {offboarding_id}")
    return row


def _reason(row: Offboarding) -> str:
    return f"offboarding {row.id}: its data is frozen for the final export, then destroyed"


# -- the steps ------------------------------------------------------------------------------------


def advance(
    db: Database,
    settings: Settings,
    admin: URL,
    offboarding_id: UUID,
    *,
    now: datetime | None = None,
) -> Offboarding:
    """Carry the offboarding on from its recorded step as far as it can go now; returns it as left.

    It stops at `requested` until approved and at `exported` until the grace period ends. One run at a
    time: a run that finds another holding the offboarding's lock leaves it to that one.
    """
    with _running(admin, data_database(db), offboarding_id) as mine:
        if not mine:
            return _get(db, offboarding_id)
        while True:
            row = _get(db, offboarding_id)
            now_ = now or datetime.now(UTC)
            if row.state == OffboardingState.REQUESTED:
                if not _take_approval(db, row.id):
                    return row
                faults.point("offboarding.approval_taken")
            elif row.state == OffboardingState.APPROVED:
                _export(db, settings, admin, row, now_)
            elif row.state == OffboardingState.EXPORTED:
                if row.grace_ends_at > now_:
                    return row
                _destroy_keys(db, row)
            elif row.state == OffboardingState.KEYS_DESTROYED:
                _delete_rows(db, admin, row)
            elif row.state == OffboardingState.ROWS_DELETED:
                _wipe_files(db, settings, row)
            elif row.state == OffboardingState.FILES_WIPED:
                _certify(db, settings, row)
            else:
                return row


def advance_all(db: Database, settings: Settings, admin: URL) -> list[UUID]:
    """Every open offboarding carried on (the worker's job); ids that failed are raised at the end."""
    with platform_session(db) as session:
        ids = list(session.scalars(select(Offboarding.id).where(Offboarding.state.in_(list(OPEN)))))
    failed = []
    for offboarding_id in ids:
        try:
            advance(db, settings, admin, offboarding_id)
        except Exception as exc:
            log.error("offboarding.step_failed", offboarding_id=str(offboarding_id), error=type(exc).__name__)
            failed.append(offboarding_id)
    if failed:
        raise RuntimeError(f"offboardings {', '.join(map(str, failed))} failed a step; the job tries again")
    return ids


@contextmanager
def _running(admin: URL, database: str, offboarding_id: UUID) -> Iterator[bool]:
    """A session-level advisory lock on a connection of its own: it dies with the process."""
    key = int.from_bytes(offboarding_id.bytes[8:], "big", signed=True)
    with psycopg.connect(snapshot.url_of(admin, database), autocommit=True) as conn:
        yield conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]


def _take_approval(db: Database, offboarding_id: UUID, actor: Principal | None = None) -> bool:
    """Copy an approval given in the institution's queue onto the row; False while there is none."""
    row = _get(db, offboarding_id)
    with tenant_session(db, row.institution_id) as session:
        approval = session.get(ApprovalRequest, (row.institution_id, row.approval_id))
        if approval is None or approval.status != "approved":
            return False
        params = {"tenant_id": str(row.institution_id), "grace_days": row.grace_days, "wipe_method": row.wipe_method}
        require_approval(approval, SensitiveAction.OFFBOARD_TENANT, params, "an offboarding")
        decided = approval.decided_by, approval.decided_by_person, approval.decided_at
    with platform_session(db) as session:
        row = _locked(session, offboarding_id)
        if row.state != OffboardingState.REQUESTED:
            return True
        row.approved_by, row.approved_by_person, row.approved_at = decided
        row.state = OffboardingState.APPROVED
        details = {"approval_id": row.approval_id, "approved_by": decided[0], "approved_by_person": decided[1]}
        record(session, Action.OFFBOARDING_APPROVED, (TARGET, row.id), details=details, actor=actor or SYSTEM)
    return True


def export_dir(settings: Settings, offboarding_id: UUID) -> Path:
    # Beside the backups, never in a file area: a platform backup must not copy the plaintext export.
    return settings.resolved_backup_dir / "offboarding" / str(offboarding_id)


def _export(db: Database, settings: Settings, admin: URL, row: Offboarding, now: datetime) -> None:
    with platform_session(db) as session:
        tenant = session.get(Tenant, row.institution_id)
        if tenant.status is not TenantStatus.SUSPENDED:
            tenant.status, tenant.suspended_reason, tenant.suspended_at = TenantStatus.SUSPENDED, _reason(row), now
            record(session, Action.TENANT_SUSPENDED, ("tenant", tenant.id), actor=SYSTEM)
    faults.point("offboarding.suspended")
    directory = export_dir(settings, row.id)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tables = write_export(db, admin, row.institution_id, directory / EXPORT_FILE)
    faults.point("offboarding.export.written")
    digest, size = _sha256_of(directory / EXPORT_FILE)
    link_expires = now + timedelta(days=settings.offboarding_link_days)
    grace_ends = now + timedelta(days=row.grace_days)
    token = export_token(db.master, row.id, link_expires)
    method = wipe.method_named(row.wipe_method)
    with tenant_session(db, row.institution_id) as session:
        _mail_administrators(
            session,
            "offboarding_export.txt",
            f"{row.institution_name}: your final export, and the date your data is destroyed",
            {
                "institution": row.institution_name,
                "offboarding_id": row.id,
                "size": size,
                "sha256": digest,
                "link": f"{settings.public_url.rstrip('/')}/api/v1/offboarding/export/{token}",
                "link_expires": mail_time(link_expires),
                "grace_ends": mail_time(grace_ends),
                "method": method.describe(),
            },
        )
        record(session, Action.OFFBOARDING_EXPORTED, (TARGET, row.id), details={"bytes": size, "sha256": digest})
    faults.point("offboarding.export.mailed")
    with platform_session(db) as session:
        locked = _locked(session, row.id)
        cancelled = locked.state != OffboardingState.APPROVED
        if not cancelled:
            locked.export_sha256, locked.export_bytes = digest, size
            locked.link_expires_at, locked.grace_ends_at = link_expires, grace_ends
            locked.state = OffboardingState.EXPORTED
            details = {"bytes": size, "sha256": digest, "tables": tables, "grace_ends_at": grace_ends.isoformat()}
            record(session, Action.OFFBOARDING_EXPORTED, (TARGET, row.id), details=details, actor=SYSTEM)
    if cancelled:  # cancelled while this run wrote it: the export goes as cancel's would have
        wipe.wipe_tree(directory, method)


def write_export(db: Database, admin: URL, tenant_id: UUID, path: Path) -> int:
    """The institution's final export, written whole or not at all (a temporary file renamed): a zip of
    `patrons.jsonl` (decrypted) and `rows/<table>.tsv`, every tenant table's rows as stored (COPY text:
    encrypted fields stay ciphertext, and become unreadable with the keys). Returns the tables written."""
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with create_private(partial) as sink, zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        archive.writestr("README.txt", _EXPORT_README)
        with tenant_session(db, tenant_id) as session, archive.open("patrons.jsonl", "w", force_zip64=True) as out:
            for page in every_patron(session):
                out.write("".join(p.model_dump_json() + "\n" for p in page).encode())
        with snapshot.snapshot(admin, data_database(db)) as (conn, _):
            tables = ["tenants", *snapshot.tables(conn, tenant_scoped=True)]
            for table in tables:
                with archive.open(f"rows/{table}.tsv", "w", force_zip64=True) as out:
                    for block in snapshot.copy_rows(conn, table, tenant_id):
                        out.write(block)
        sink.flush()
        os.fsync(sink.fileno())
    partial.replace(path)
    return len(tables)


_EXPORT_README = """Your institution's final export from Bookwarden.

patrons.jsonl   every patron, decrypted, one JSON object a line.
rows/*.tsv      every table's rows of the institution as stored (PostgreSQL COPY text format, tab-separated);
                personal fields are ciphertext there, sealed under keys destroyed with the offboarding.
"""


def _sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while block := source.read(wipe.BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _mail_administrators(session: TenantSession, template: str, subject: str, context: dict[str, Any]) -> int:
    holders = holders_to_mail(session, ADMINISTRATORS)
    for _, address in holders:
        queue_mail(
            session, to=address, subject=subject, template=template, context=context, category=MailCategory.SERVICE
        )
    return len(holders)


def _destroy_keys(db: Database, row: Offboarding) -> None:
    with platform_session(db) as session:
        locked = _locked(session, row.id)
        if locked.state != OffboardingState.EXPORTED:
            return
        if "destroy" not in locked.steps:  # first run: what the keyring holds, before any of it goes
            with db.keyring.engine.connect() as conn:
                counts = {
                    "tenant_keys": _count(conn, tenant_keys, row.institution_id),
                    "subject_keys": _count(conn, subject_keys, row.institution_id),
                }
            locked.steps = {**locked.steps, "destroy": {"started_at": datetime.now(UTC).isoformat(), **counts}}
    faults.point("offboarding.keys.counted")
    # Told before the keys go: afterwards their addresses cannot be read. Straight over SMTP, since the
    # institution's outbox is deleted with its rows; a stable Message-ID, so a retry reads as the same mail.
    with tenant_session(db, row.institution_id) as session:
        addresses = [address for _, address in holders_to_mail(session, ADMINISTRATORS)]
    if addresses:
        send_to_operators(
            addresses,
            f"{row.institution_name}: your data is being destroyed now",
            _DESTRUCTION_NOTICE.format(name=row.institution_name, id=row.id),
            f"offboarding-{row.id}-destruction",
        )
    faults.point("offboarding.keys.mailed")
    db.keyring.destroy_tenant(row.institution_id)
    faults.point("offboarding.keys.destroyed")
    with platform_session(db) as session:
        locked = _locked(session, row.id)
        locked.state = OffboardingState.KEYS_DESTROYED
        keys = {**locked.steps["destroy"], "destroyed_at": datetime.now(UTC).isoformat(), "notified": len(addresses)}
        locked.steps = {**locked.steps, "keys": keys}
        record(session, Action.OFFBOARDING_KEYS_DESTROYED, (TARGET, row.id), details=keys, actor=SYSTEM)


_DESTRUCTION_NOTICE = """The grace period of the offboarding of {name} (request {id}) has ended.

Its keys are being destroyed now, which makes every copy of its data unreadable, its rows deleted and its
files overwritten. A signed certificate of destruction is issued when this is done; ask the platform
operator for it (it verifies offline: bookwarden certificate verify FILE).
"""


def _count(conn, table, tenant_id: UUID) -> int:
    return conn.execute(select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)).scalar_one()


def _delete_rows(db: Database, admin: URL, row: Offboarding) -> None:
    # As the server's administrative role, in replica mode: the audit tables' triggers refuse every delete
    # to every other role (the trail is append-only), and foreign keys need no row-by-row check when every
    # row of the institution goes. The tables come from the catalogue: every one with a tenant_id column.
    data = data_database(db)
    with psycopg.connect(snapshot.url_of(admin, keyring_database(data))) as conn:
        # The keyring's counts are kept (in the data database) before its rows go: a run that dies between
        # the two databases' commits still knows what was there.
        _keep_once(admin, data, row.id, "keyring_rows", _tenant_counts(conn, row.institution_id))
        _delete_tenant_rows(conn, row.institution_id)
    faults.point("offboarding.rows.keyring_deleted")
    with psycopg.connect(snapshot.url_of(admin, data)) as conn:
        counts = _delete_tenant_rows(conn, row.institution_id)
        counts["tenants"] = conn.execute("DELETE FROM tenants WHERE id = %s", (row.institution_id,)).rowcount
        # In the same transaction as the deletes: the counts are recorded exactly when the rows went.
        _keep_once_in(conn, row.id, "rows", counts)
        faults.point("offboarding.rows.deleting")  # inside the transaction: a crash here deletes nothing
    faults.point("offboarding.rows.deleted")
    with platform_session(db) as session:
        locked = _locked(session, row.id)
        locked.state = OffboardingState.ROWS_DELETED
        details = {
            "rows": sum(locked.steps["rows"].values()),
            "tables": sorted(locked.steps["rows"]),
            "keyring_rows": sum(locked.steps["keyring_rows"].values()),
        }
        record(session, Action.OFFBOARDING_ROWS_DELETED, (TARGET, row.id), details=details, actor=SYSTEM)


def _tenant_counts(conn: psycopg.Connection, tenant_id: UUID) -> dict[str, int]:
    counts = {}
    for table in snapshot.tables(conn, tenant_scoped=True):
        query = sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(sql.Identifier(table))
        if n := conn.execute(query, (tenant_id,)).fetchone()[0]:
            counts[table] = n
    return counts


def _delete_tenant_rows(conn: psycopg.Connection, tenant_id: UUID) -> dict[str, int]:
    conn.execute("SET LOCAL session_replication_role = replica")
    counts = {}
    for table in snapshot.tables(conn, tenant_scoped=True):
        query = sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(sql.Identifier(table))
        if deleted := conn.execute(query, (tenant_id,)).rowcount:
            counts[table] = deleted
    return counts


def _keep_once(admin: URL, data: str, offboarding_id: UUID, step: str, counts: dict[str, int]) -> None:
    with psycopg.connect(snapshot.url_of(admin, data)) as conn:
        _keep_once_in(conn, offboarding_id, step, counts)


def _keep_once_in(conn: psycopg.Connection, offboarding_id: UUID, step: str, counts: dict[str, int]) -> None:
    conn.execute(
        "UPDATE offboardings SET steps = jsonb_set(steps, %s, %s::jsonb) WHERE id = %s AND NOT steps ? %s",
        ([step], json.dumps(counts), offboarding_id, step),
    )


def _wipe_files(db: Database, settings: Settings, row: Offboarding) -> None:
    method = wipe.method_named(row.wipe_method)
    with platform_session(db) as session:
        backups = list(
            session.scalars(
                select(Backup).where(
                    Backup.kind == BackupKind.TENANT,
                    Backup.institution_id == row.institution_id,
                    Backup.status != BackupStatus.REMOVED,
                )
            )
        )
    targets = [
        settings.resolved_home / "tenants" / str(row.institution_id),
        export_dir(settings, row.id),
        *(Path(b.directory) for b in backups),
    ]
    with platform_session(db) as session:
        locked = _locked(session, row.id)
        if "files" not in locked.steps:  # the inventory, once, before anything is overwritten
            found = [_inventory(path) for path in targets]
            locked.steps = {
                **locked.steps,
                "files": {
                    "method": method.name,
                    "files": sum(f for f, _ in found),
                    "bytes": sum(b for _, b in found),
                    "tenant_backups": [str(b.id) for b in backups],
                },
            }
    for index, path in enumerate(targets):
        wipe.wipe_tree(path, method)
        if index == 0:
            faults.point("offboarding.files.first_wiped")
    faults.point("offboarding.files.wiped")
    with platform_session(db) as session:
        for backup in backups:
            found = session.get(Backup, backup.id)
            found.status, found.removed_at = BackupStatus.REMOVED, datetime.now(UTC)
            record(session, Action.BACKUP_REMOVED, ("backup", backup.id), details={"kind": "tenant"}, actor=SYSTEM)
        locked = _locked(session, row.id)
        locked.state = OffboardingState.FILES_WIPED
        files = {**locked.steps["files"], "wiped_at": datetime.now(UTC).isoformat()}
        locked.steps = {**locked.steps, "files": files}
        details = {k: v for k, v in files.items() if k != "tenant_backups"}
        record(session, Action.OFFBOARDING_FILES_WIPED, (TARGET, row.id), details=details, actor=SYSTEM)


def _inventory(root: Path) -> tuple[int, int]:
    if not root.exists():
        return 0, 0
    if root.is_file():
        return 1, root.stat().st_size
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            entry = Path(folder) / name
            if entry.is_file() and not entry.is_symlink():
                files, size = files + 1, size + entry.stat().st_size
    return files, size


def _certify(db: Database, settings: Settings, row: Offboarding) -> None:
    signer = load_signing_key(settings)
    with platform_session(db) as session:
        locked = _locked(session, row.id)
        if locked.state != OffboardingState.FILES_WIPED:
            return
        certificate = build_certificate(session, settings, locked)
        document = sign_certificate(certificate, signer).decode()
        locked.certificate, locked.state = document, OffboardingState.CERTIFIED
        locked.finished_at = datetime.now(UTC)
        details = {"sha256": hashlib.sha256(document.encode()).hexdigest(), "key_id": signer.key_id}
        record(session, Action.OFFBOARDING_CERTIFIED, (TARGET, row.id), details=details, actor=SYSTEM)
        # Before the commit: a crash here leaves no certificate, and no event.
        faults.point("offboarding.certificate.signing")


def build_certificate(session, settings: Settings, row: Offboarding) -> dict[str, Any]:
    """What was destroyed, when, how, by whom; and which backups still hold its ciphertext, until when."""
    steps = row.steps
    method = wipe.method_named(row.wipe_method)
    destroyed_at = datetime.fromisoformat(steps["keys"]["destroyed_at"])
    holding = []
    for backup in session.scalars(
        select(Backup)
        .where(
            Backup.kind.in_([BackupKind.PLATFORM, BackupKind.KEYRING]),
            Backup.status == BackupStatus.COMPLETE,
            Backup.started_at <= destroyed_at,
        )
        .order_by(Backup.started_at)
    ):
        keep = (
            settings.keyring_backup_retention_days
            if backup.kind == BackupKind.KEYRING
            else settings.data_backup_days_at_most
        )
        holding.append(
            {
                "id": str(backup.id),
                "kind": str(backup.kind),
                "holds": "the institution's keys, wrapped by the master key"
                if backup.kind == BackupKind.KEYRING
                else "the institution's rows, personal fields encrypted",
                "taken_at": backup.started_at.astimezone(UTC).isoformat(),
                "expires_by": (backup.started_at + timedelta(days=keep)).astimezone(UTC).isoformat(),
            }
        )
    keyring_ends = [b["expires_by"] for b in holding if b["kind"] == BackupKind.KEYRING]
    data_ends = [b["expires_by"] for b in holding if b["kind"] == BackupKind.PLATFORM]
    return {
        "format": FORMAT,
        "id": str(row.id),
        "institution": {"id": str(row.institution_id), "slug": row.institution_slug, "name": row.institution_name},
        "requested": {"by": str(row.requested_by_person or row.requested_by), "at": _iso(row.requested_at)},
        "approved": {"by": str(row.approved_by_person or row.approved_by), "at": _iso(row.approved_at)},
        "final_export": {
            "sha256": row.export_sha256,
            "bytes": row.export_bytes,
            "link_expired_at": _iso(row.link_expires_at),
            "wiped": True,
        },
        "grace_period": {"days": row.grace_days, "ended_at": _iso(row.grace_ends_at)},
        "destroyed": {
            "keys": {
                "how": "every tenant key and subject key of the institution destroyed in the keyring (cryptographic "
                "erase: NIST SP 800-88 purge)",
                "at": steps["keys"]["destroyed_at"],
                "tenant_keys": steps["keys"]["tenant_keys"],
                "subject_keys": steps["keys"]["subject_keys"],
            },
            "rows": {
                "how": "every row with the institution's tenant_id in every table of the catalogue; its tenants row",
                "data_tables": steps["rows"],
                "keyring_tables": steps["keyring_rows"],
            },
            "files": {
                "how": method.describe(),
                "method": method.name,
                "files": steps["files"]["files"],
                "bytes": steps["files"]["bytes"],
                "tenant_backups_wiped": steps["files"]["tenant_backups"],
                "at": steps["files"]["wiped_at"],
                "limits": wipe.LIMITS,
            },
        },
        "backups_still_holding_ciphertext": holding,
        "ciphertext_in_backups_until": max(data_ends + keyring_ends, default=None),
        # The window that matters: after the last keyring backup holding its keys expires, nothing opens it.
        "decryptable_from_backups_until": max(keyring_ends, default=None),
        "issued_at": datetime.now(UTC).isoformat(),
        "issued_by": "the Bookwarden platform (audit signing key)",
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


# -- the export link ------------------------------------------------------------------------------


def link_key(master_key: bytes) -> bytes:
    """The key export links are signed with: derived from the master key for this purpose only."""
    return derive(master_key, KeyPurpose.OFFBOARDING_EXPORT_LINK)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def export_token(master: MasterKeys, offboarding_id: UUID, expires: datetime) -> str:
    """`payload.mac`: the offboarding and the expiry, HMAC-SHA256 under a key for this purpose only."""
    payload = canonical_json({"offboarding": str(offboarding_id), "exp": int(expires.timestamp())})
    return f"{_b64(payload)}.{_b64(hmac.new(link_key(master.current), payload, hashlib.sha256).digest())}"


def open_export(db: Database, settings: Settings, token: str, now: datetime | None = None) -> tuple[Offboarding, Path]:
    """The offboarding and its export file, once the link is whole, signed, unexpired and the export there.

    Every refusal is the same 401 invalid-link, decided after the signature check ran in full.
    """
    try:
        text_payload, text_mac = token.split(".")
        payload = base64.urlsafe_b64decode(text_payload + "=" * (-len(text_payload) % 4))
        mac = base64.urlsafe_b64decode(text_mac + "=" * (-len(text_mac) % 4))
    except (ValueError, binascii.Error):
        raise ExportLinkInvalid() from None
    expected = hmac.new(link_key(db.master.current), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected) or _b64(payload) != text_payload:
        raise ExportLinkInvalid()
    claims = json.loads(payload)
    if claims["exp"] <= int((now or datetime.now(UTC)).timestamp()):
        raise ExportLinkInvalid()
    with platform_session(db) as session:
        row = session.get(Offboarding, UUID(claims["offboarding"]))
        path = export_dir(settings, row.id) / EXPORT_FILE if row is not None else None
        if row is None or row.state != OffboardingState.EXPORTED or not path.exists():
            raise ExportLinkInvalid()
        record(session, Action.OFFBOARDING_EXPORT_DOWNLOADED, (TARGET, row.id), details={"bytes": row.export_bytes})
        session.expunge(row)
    return row, path


__all__ = [
    "advance",
    "advance_all",
    "approve_offboarding",
    "cancel_offboarding",
    "checked_params",
    "export_token",
    "list_offboardings",
    "open_export",
    "read_certificate",
    "request_offboarding",
]
