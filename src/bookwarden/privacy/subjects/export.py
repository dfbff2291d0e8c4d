"""Access and portability: a ZIP of every record about a patron, sealed at rest, behind a 7-day link.

What goes in comes from the registry's map (privacy/subjects/data.py): every table linked to the
patron or to the patron's accounts, as JSON and CSV, decrypted; mail sent to their addresses; and
the audit events where they acted or were acted on. A manifest lists each table with its count and
categories.

The ZIP is written as it is made, a table and a page of rows at a time (bounded memory whatever the
subject holds), into 1 MiB chunks, each sealed with AES-256-GCM under the package's own key. That key
is a keyring key wrapped by the tenant key (crypto/keyring.py create_subject), so destroying it on
expiry makes every copy of the chunks, backups included, unreadable. Each chunk's AAD binds tenant,
package, position and whether it is the last one: chunks cannot be reordered, swapped between
packages or cut short unnoticed.

The download link carries the tenant and package ids and 32 random bytes; only the SHA-256 of the
random part is stored. Each download is recorded. An hourly job deletes expired packages and
destroys their keys.

Staff build a package (HTTP and console alike, through `build_for_staff`) either to answer an open access
or portability request, which went through the request lifecycle, or under maker-checker: one holder of
privacy.requests.handle asks (SensitiveAction.EXPORT_SUBJECT, bound to the patron), another approves, and
the one who asked builds it once, within 24 hours of the approval; its link is then downloaded once. A
patron whose deletion is pending (library/deletion.py) is hidden: no package is built about them outside a
request (a request about them is still answered: the data is still held, and the law says so).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import json
import secrets
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import structlog
from sqlalchemy import delete, func, insert, select, text, update

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.csv_safety import spreadsheet_safe
from bookwarden.core.errors import ApprovalRequired, Conflict, Gone, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.crypto.aead import cipher, open_sealed, seal
from bookwarden.crypto.keyring import KeyDestroyed
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.library.models import Patron
from bookwarden.privacy.disclosures.service import disclosures_about
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects.data import Subject
from bookwarden.privacy.subjects.models import SubjectExportChunk, SubjectExportPackage
from bookwarden.tenancy.service import ensure_active

log = structlog.get_logger()

VALID_FOR = timedelta(days=7)
APPROVAL_VALID_FOR = timedelta(hours=24)  # from the approval to the build, outside a request
WHAT = "an access package outside a data-subject request"
CHUNK_BYTES = 1 << 20
CSV_BUFFER_BYTES = 8 << 20  # CSV lines of one table kept while its JSON is written
ROWS_PER_BATCH = 1000
TARGET = "subject_export"
TOKEN_SECRET_BYTES = 32
TOKEN_LENGTH = 86  # base64url, unpadded, of tenant id (16) + package id (16) + secret (32)
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{86}$"  # noqa: S105 - a shape, not a secret
MEDIA_TYPE = "application/zip"
PURGE = "privacy.subject_exports_purge"
PURGE_EVERY = timedelta(hours=1)
PURGE_BATCH = 500
# Tables the registry links to the patron that are not records about them but copies of such records.
EXCLUDED = {
    "subject_export_packages": "earlier access packages: copies of the records below, not records of their own",
    "subject_export_chunks": "the sealed bytes of earlier access packages",
    # A hold's reason names a legal matter: telling its subject may prejudice it; the institution decides.
    "legal_holds": "legal holds on the data: disclosed by the institution when the matter allows, not here",
    # Each row only names a disclosure; records/disclosures says to whom, why and on what basis.
    "disclosure_subjects": "listed in records/disclosures with the recipient, purpose, basis and categories",
}
DISCLOSURES = "disclosures"
DISCLOSURE_FIELDS = ("id", "disclosed_at", "recipient", "kind", "purpose", "basis", "categories", "reference")
# Where the law forbids telling the subject (a court order), the disclosure is not in their copy either.
WITHHELD = "disclosures whose notice the law forbids (a legal request with a stated reason), until it is lifted"
README = """Everything {institution} holds about you, as of {generated_at} UTC.

Each file under records/ is one kind of record, twice: as JSON (for programs) and as CSV (for
spreadsheets). manifest.json lists them with their counts and the categories of personal data they
hold. audit_events are the entries of the institution's audit trail where you acted or were acted on;
their source address and user agent are kept at most 90 days ("context": purged once they are gone).
Credentials (password hashes, second-factor secrets) are never disclosed, not even to their holder.
"""


@dataclass(frozen=True)
class Package:
    """A built package. `token` is the download link's secret: shown once, never stored."""

    id: UUID
    patron_id: UUID
    expires_at: datetime
    size_bytes: int
    record_count: int
    token: str

    @property
    def download_path(self) -> str:
        return f"/api/v1/privacy/subject-exports/download/{self.token}"


# -- building --------------------------------------------------------------------------------------

# Read by SQL, not through the requests area: it carries its requests out through this module, so
# this one does not import it back. Row-level security keeps the read inside the institution.
_REQUEST = text(
    "SELECT kind, state FROM privacy_requests WHERE tenant_id = :tenant AND id = :id AND patron_id = :patron"
)
ANSWERED_KINDS = frozenset({"access", "portability"})
OPEN_STATES = frozenset({"approved", "in_progress"})


def _check_answers(session: TenantSession, request_id: UUID, patron_id: UUID) -> None:
    found = session.execute(_REQUEST, {"tenant": session.tenant_id, "id": request_id, "patron": patron_id}).first()
    if found is None:
        raise NotFound(f"request_id: no data-subject request {request_id} about patron {patron_id} here; nothing built")
    if found.kind not in ANSWERED_KINDS:
        raise Conflict(
            f"request_id: request {request_id} is a {found.kind} request; a package answers access or "
            "portability; nothing built"
        )
    if found.state not in OPEN_STATES:
        raise Conflict(
            f"request_id: request {request_id} is {found.state}; a package answers an approved or "
            "in-progress request; nothing built"
        )


# -- staff building: a request, or two people --------------------------------------------------------------


def checked_params(session: TenantSession, params: dict) -> dict:
    """The approval kind's check (privacy/subjects/approvals.py): a patron of this institution, not being deleted."""
    try:
        patron_id = UUID(str(params.get("patron_id")))
    except ValueError:
        raise InvalidInput("patron_id: the id of the patron whose access package is asked for") from None
    _live_patron(session, patron_id)
    return {"patron_id": str(patron_id)}


def _live_patron(session: TenantSession, patron_id: UUID) -> None:
    patron = session.get(Patron, (session.tenant_id, patron_id))
    if patron is None or patron.deletion_due_at is not None:  # being deleted: hidden (library/deletion.py)
        raise NotFound(f"no patron {patron_id}")


def ask(session: TenantSession, actor: Principal, patron_id: UUID) -> ApprovalRequest:
    """Ask for a package outside a data-subject request; another holder of privacy.requests.handle approves."""
    return approvals.ask(session, actor, SensitiveAction.EXPORT_SUBJECT, {"patron_id": str(patron_id)})


def build_for_staff(
    session: TenantSession,
    actor: Principal,
    patron_id: UUID,
    *,
    request_id: UUID | None = None,
    approval_id: UUID | None = None,
) -> Package:
    """The one way staff build a package, over HTTP and at the console: answering the open data-subject request
    `request_id`, or under `approval_id`, an approved EXPORT_SUBJECT about this patron that `actor` asked for."""
    authorize(actor, Permission.PRIVACY_REQUESTS_HANDLE)
    if request_id is not None and approval_id is not None:
        # 409, not 422: each is valid alone; together they say two different things about why it is built.
        raise Conflict(
            "give the data-subject request the package answers, or the approval it was asked under, not both"
        )
    if request_id is None:
        _claim(session, actor, patron_id, approval_id)
    return build_package(session, patron_id, request_id=request_id, approval_id=approval_id)


def _claim(session: TenantSession, actor: Principal, patron_id: UUID, approval_id: UUID | None) -> None:
    """Refuse unless `approval_id` is an approved package of this patron asked by `actor`, less than 24 hours
    old and never built; the approval row stays locked until the build's transaction ends."""
    if approval_id is None:
        raise ApprovalRequired(
            f"{WHAT} needs a second person's approval: ask at POST /api/v1/privacy/subject-exports/approvals, "
            "another holder of privacy.requests.handle approves it, then build it with its approval_id; or name "
            "the data-subject request it answers (request_id)"
        )
    approval = session.get(ApprovalRequest, (session.tenant_id, approval_id), with_for_update=True)
    if (
        approval is None
        or approval.action != SensitiveAction.EXPORT_SUBJECT
        or not actor.same_party(approval.requested_by, approval.requested_by_person)
    ):
        # Someone else's approval is "not found": its existence is not theirs to learn.
        raise NotFound(f"no access package approval {approval_id} asked by you")
    require_approval(approval, SensitiveAction.EXPORT_SUBJECT, {"patron_id": str(patron_id)}, WHAT)
    assert approval.decided_at is not None  # approved means decided
    if approval.decided_at + APPROVAL_VALID_FOR <= session.scalar(select(func.now())):
        hours = APPROVAL_VALID_FOR // timedelta(hours=1)
        raise Conflict(f"the approval of this access package is more than {hours} hours old; ask again")
    built = session.scalar(
        select(SubjectExportPackage.id).where(
            SubjectExportPackage.tenant_id == session.tenant_id, SubjectExportPackage.approval_id == approval_id
        )
    )
    if built is not None:
        raise Conflict("this access package was built already; an approval allows one: ask again")
    _live_patron(session, patron_id)


# -- building --------------------------------------------------------------------------------------------


def build_package(
    session: TenantSession, patron_id: UUID, *, request_id: UUID | None = None, approval_id: UUID | None = None
) -> Package:
    """Build the access package of `patron_id`; it becomes visible when the caller's transaction commits.

    `request_id`, when given, must name an open access or portability request of this institution
    about this patron: the package's record says which request it answers. Staff reach this through
    `build_for_staff` (which checks the request, or claims the approval `approval_id`); the request
    lifecycle (privacy/requests/fulfilment.py) calls it with the request it carries out."""
    if request_id is not None:
        _check_answers(session, request_id, patron_id)
    who = subject_data.subject(session, patron_id)
    package_id = uuid4()
    now = session.scalar(select(func.now()))
    secret = secrets.token_bytes(TOKEN_SECRET_BYTES)
    row = SubjectExportPackage(
        tenant_id=session.tenant_id,
        id=package_id,
        patron_id=patron_id,
        request_id=request_id,
        approval_id=approval_id,
        created_by=_actor_id(),
        token_hash=hashlib.sha256(secret).digest(),
        chunk_count=0,
        size_bytes=0,
        record_count=0,
        sha256=b"",
        expires_at=now + VALID_FOR,
        downloads=0,
    )
    session.add(row)
    session.flush()  # the chunks refer to it
    # Committed in the keyring at once; if this transaction rolls back, the key protects nothing and
    # the expiry job never meets it (a key without chunks is harmless).
    key = session.keyring.create_subject(session.tenant_id, package_id)
    sink = _SealedSink(session, package_id, key)
    counts = _write_zip(session, who, sink, now)
    sink.finish()
    row.chunk_count, row.size_bytes, row.sha256 = sink.seq, sink.size, sink.digest.digest()
    row.record_count = sum(counts.values())
    session.flush()
    audit.record(
        session,
        Action.SUBJECT_EXPORT_BUILT,
        (TARGET, package_id),
        details={
            "patron_id": patron_id,
            "request_id": request_id,
            "approval_id": approval_id,
            "records": row.record_count,
            "bytes": row.size_bytes,
            "tables": sorted(name for name, n in counts.items() if n),
            "expires_at": row.expires_at.isoformat(),
        },
    )
    token = base64.urlsafe_b64encode(session.tenant_id.bytes + package_id.bytes + secret).decode().rstrip("=")
    faults.point("export.package_written")
    return Package(package_id, patron_id, row.expires_at, row.size_bytes, row.record_count, token)


def _actor_id() -> UUID | None:
    principal = audit.current().principal
    return principal.id if principal is not None else None


def _write_zip(session: TenantSession, who: Subject, sink: _SealedSink, now: datetime) -> dict[str, int]:
    counts: dict[str, int] = {}
    manifest: dict[str, Any] = {
        "format": "bookwarden-access-package-v1",
        "tenant_id": str(who.tenant_id),
        "patron_id": str(who.patron_id),
        "account_ids": [str(a) for a in who.account_ids],
        "generated_at": now.astimezone(UTC).isoformat(),
        "tables": {},
        "left_out": EXCLUDED,
    }
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for location in subject_data.locations():
            if location.name in EXCLUDED:
                continue
            rows = lambda loc=location: subject_data.rows(session, loc, who)  # noqa: E731 - may be read twice
            counts[location.name] = _write_table(
                archive,
                f"records/{location.name}",
                subject_data.columns(location),
                subject_data.structured(location),
                rows,
            )
            manifest["tables"][location.name] = {
                "records": counts[location.name],
                "categories": [c.value for c in location.categories],
            }
        audit_rows = lambda: subject_data.audit_rows(session, who)  # noqa: E731
        counts[subject_data.AUDIT_TABLE] = _write_table(
            archive,
            f"records/{subject_data.AUDIT_TABLE}",
            subject_data.AUDIT_FIELDS,
            subject_data.AUDIT_STRUCTURED,
            audit_rows,
        )
        manifest["tables"][subject_data.AUDIT_TABLE] = {"records": counts[subject_data.AUDIT_TABLE], "categories": []}
        counts[DISCLOSURES] = _write_table(
            archive, f"records/{DISCLOSURES}", DISCLOSURE_FIELDS, ("categories",), lambda: _disclosures(session, who)
        )
        manifest["tables"][DISCLOSURES] = {"records": counts[DISCLOSURES], "categories": []}
        manifest["left_out"] = {**EXCLUDED, "withheld_disclosures": WITHHELD}
        institution = session.execute(text("SELECT name FROM tenants WHERE id = :id"), {"id": who.tenant_id}).scalar()
        archive.writestr("README.txt", README.format(institution=institution, generated_at=now.isoformat()))
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return counts


def _disclosures(session: TenantSession, who: Subject) -> Iterator[tuple]:
    for made in disclosures_about(session, who.patron_id):
        if made.notice_withheld_reason is None:
            yield tuple(subject_data.plain(getattr(made, name)) for name in DISCLOSURE_FIELDS)


def _write_table(archive: zipfile.ZipFile, stem: str, columns: Sequence[str], structured: Sequence[str], rows) -> int:
    """`stem`.json (an array of objects) and `stem`.csv (a header, then one line per row).

    Rows are rendered a batch at a time. One read of the rows writes the JSON and keeps the CSV aside,
    up to CSV_BUFFER_BYTES; a table whose CSV outgrows that is read a second time for it. Memory stays
    bounded either way.
    """
    count = 0
    as_json = tuple(columns.index(name) for name in structured)
    kept: list[bytes] | None = []
    kept_bytes = 0
    with archive.open(f"{stem}.json", "w") as raw:
        raw.write(b"[")
        for batch in _batched(rows(), ROWS_PER_BATCH):
            records = [dict(zip(columns, values, strict=True)) for values in batch]
            text = json.dumps(records, ensure_ascii=False, default=str)
            raw.write((b",\n" if count else b"\n") + text[1:-1].encode())  # the batch's array, unwrapped
            count += len(batch)
            if kept is not None:
                kept.append(_csv(batch, as_json))
                kept_bytes += len(kept[-1])
                if kept_bytes > CSV_BUFFER_BYTES:
                    kept = None  # too big to keep: read again below
        raw.write(b"\n]\n")
    with archive.open(f"{stem}.csv", "w") as raw:
        raw.write(_csv([columns], ()))
        if kept is not None:
            raw.write(b"".join(kept))
        else:
            for batch in _batched(rows(), ROWS_PER_BATCH):
                raw.write(_csv(batch, as_json))
    return count


def _batched(items: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _csv(lines: Sequence[Sequence[Any]], as_json: tuple[int, ...]) -> bytes:
    """CSV lines as bytes: lists and objects (at `as_json`) as JSON text; a cell a spreadsheet would run
    as a formula starts with '."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for line in lines:
        if as_json:
            line = list(line)
            for index in as_json:
                if line[index] is not None:
                    line[index] = json.dumps(line[index], ensure_ascii=False, sort_keys=True)
        writer.writerow(spreadsheet_safe(line))
    return buffer.getvalue().encode()


def _chunk_aad(tenant_id: UUID, package_id: UUID, seq: int, final: bool) -> bytes:
    return f"subject-export|{tenant_id}|{package_id}|{seq}|{'final' if final else 'more'}".encode()


class _SealedSink:
    """A write-only file for zipfile: bytes are cut into chunks, sealed and inserted as they come.

    It has tell() but no seek(), so zipfile streams (sizes in data descriptors) and never goes back.
    """

    def __init__(self, session: TenantSession, package_id: UUID, key: bytes):
        self.session, self.package_id, self.key = session, package_id, cipher(key)
        self.buffer = bytearray()
        self.seq = 0
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.size += len(data)
        self.digest.update(data)
        while len(self.buffer) > CHUNK_BYTES:  # strictly more: the last chunk is always sealed as final
            self._seal(bytes(self.buffer[:CHUNK_BYTES]), final=False)
            del self.buffer[:CHUNK_BYTES]
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        self._seal(bytes(self.buffer), final=True)
        self.buffer.clear()

    def _seal(self, plaintext: bytes, *, final: bool) -> None:
        tenant_id = self.session.tenant_id
        body = seal(self.key, plaintext, _chunk_aad(tenant_id, self.package_id, self.seq, final))
        self.session.execute(
            insert(SubjectExportChunk.__table__).values(
                tenant_id=tenant_id, package_id=self.package_id, seq=self.seq, body=body
            )
        )
        self.seq += 1


# -- downloading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    package_id: UUID
    size_bytes: int
    chunks: Iterator[bytes]

    @property
    def filename(self) -> str:
        return f"access-package-{self.package_id}.zip"


NOT_FOUND = "no access package at this link: the link is wrong, or the package expired after 7 days"


def parse_token(token: str) -> tuple[UUID, UUID, bytes]:
    """(tenant id, package id, secret) from a link token; NotFound for anything else."""
    if len(token) != TOKEN_LENGTH:
        raise NotFound(NOT_FOUND)
    try:
        raw = base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError):
        raise NotFound(NOT_FOUND) from None
    if len(raw) != 32 + TOKEN_SECRET_BYTES:
        raise NotFound(NOT_FOUND)
    return UUID(bytes=raw[:16]), UUID(bytes=raw[16:32]), raw[32:]


def open_download(db: Database, token: str) -> Download:
    """Check the link, record the download (committed before any byte leaves), then stream the ZIP."""
    tenant_id, package_id, secret = parse_token(token)
    with tenant_session(db, tenant_id) as session:
        package = session.scalars(
            select(SubjectExportPackage)
            .where(SubjectExportPackage.tenant_id == tenant_id, SubjectExportPackage.id == package_id)
            .with_for_update()
        ).first()
        now = session.scalar(select(func.now()))
        presented = hashlib.sha256(secret).digest()
        if package is None or not hmac.compare_digest(package.token_hash, presented) or package.expires_at <= now:
            raise NotFound(NOT_FOUND)
        count, size = _release(session, package, now)
    return Download(package_id, size, _chunks(db, tenant_id, package_id, count))


def _release(session: TenantSession, package: SubjectExportPackage, now: datetime, **details: Any) -> tuple[int, int]:
    """Count and record one download of a locked, current package: (chunks, bytes)."""
    ensure_active(session, package.tenant_id)
    if package.approval_id is not None and package.downloads > 0:
        # Built outside a request, under one approval: one build, one download (the row is locked by the caller).
        raise Conflict(
            "this access package was built outside a data-subject request and was downloaded once already; "
            "ask again for another"
        )
    package.downloads += 1
    package.last_downloaded_at = now
    audit.record(
        session,
        Action.SUBJECT_EXPORT_DOWNLOADED,
        (TARGET, package.id),
        details={
            "patron_id": package.patron_id, "bytes": package.size_bytes, "download": package.downloads, **details,
        },
    )  # fmt: skip
    return package.chunk_count, package.size_bytes


# -- the patron's own packages, in the portal ---------------------------------------------------------


@dataclass(frozen=True)
class OwnPackage:
    id: UUID
    created_at: datetime
    expires_at: datetime
    size_bytes: int
    record_count: int
    downloads: int


OWN_GONE = (
    "this access package expired after 7 days and was destroyed with its key; ask for a new copy of your data "
    "on the requests page"
)
OWN_NOT_FOUND = "you have no access package with this id"


def own_packages(session: TenantSession, patron_id: UUID) -> list[OwnPackage]:
    """The signed-in patron's packages still to download (built to answer their requests), newest first.

    The caller authorized the patron and found their record (identity's `own_patron_id`); metadata only, the
    page that shows it records its own reading."""
    rows = session.scalars(
        select(SubjectExportPackage)
        .where(
            SubjectExportPackage.tenant_id == session.tenant_id,
            SubjectExportPackage.patron_id == patron_id,
            SubjectExportPackage.request_id.is_not(None),
            SubjectExportPackage.expires_at > func.now(),
        )
        .order_by(SubjectExportPackage.created_at.desc())
    )
    return [OwnPackage(p.id, p.created_at, p.expires_at, p.size_bytes, p.record_count, p.downloads) for p in rows]


def open_own_download(db: Database, tenant_id: UUID, patron_id: UUID, package_id: UUID) -> Download:
    """The patron's own package, by the portal's sign-in instead of the mailed link: only one built to answer
    their own request. Another patron's package, or none, is not found; an expired one is gone (410)."""
    with tenant_session(db, tenant_id) as session:
        package = session.scalars(
            select(SubjectExportPackage)
            .where(
                SubjectExportPackage.tenant_id == tenant_id,
                SubjectExportPackage.id == package_id,
                SubjectExportPackage.patron_id == patron_id,
                SubjectExportPackage.request_id.is_not(None),
            )
            .with_for_update()
        ).first()
        if package is None:
            raise NotFound(OWN_NOT_FOUND)
        now = session.scalar(select(func.now()))
        if package.expires_at <= now:
            raise Gone(OWN_GONE)
        count, size = _release(session, package, now, via="portal")
    return Download(package_id, size, _chunks(db, tenant_id, package_id, count))


def _chunks(db: Database, tenant_id: UUID, package_id: UUID, count: int) -> Iterator[bytes]:
    with tenant_session(db, tenant_id) as session:
        try:
            key = cipher(session.keyring.subject_key(tenant_id, package_id))
        except KeyDestroyed:
            raise NotFound(NOT_FOUND) from None
        chunks = SubjectExportChunk.__table__.c
        for seq in range(count):
            body = session.scalar(
                select(chunks.body).where(
                    chunks.tenant_id == tenant_id, chunks.package_id == package_id, chunks.seq == seq
                )
            )
            if body is None:
                raise NotFound(NOT_FOUND)  # expired while being read
            yield open_sealed(key, body, _chunk_aad(tenant_id, package_id, seq, seq == count - 1))


def read_package(db: Database, token: str) -> bytes:
    """The whole ZIP at once (tests and the command line; the route streams)."""
    return b"".join(open_download(db, token).chunks)


# -- removing ----------------------------------------------------------------------------------------


def remove_packages(session: TenantSession, package_ids: list[UUID]) -> int:
    """Delete packages (their chunks go with them) and destroy their keys; returns rows deleted."""
    if not package_ids:
        return 0
    deleted = session.execute(
        delete(SubjectExportPackage).where(
            SubjectExportPackage.tenant_id == session.tenant_id, SubjectExportPackage.id.in_(package_ids)
        )
    ).rowcount
    for package_id in package_ids:
        session.keyring.shred_subject(session.tenant_id, package_id)
    return deleted


def purge_expired(db: Database, batch: int = PURGE_BATCH) -> int:
    """Delete every expired package and destroy its key. Idempotent: a package half-removed by a crash
    (key destroyed, rows not yet deleted) is found again and finished."""
    with platform_session(db) as session:
        due = session.execute(
            text("SELECT tenant_id, package_id FROM bookwarden_subject_exports_expired(:n)"), {"n": batch}
        ).all()
    per_tenant: dict[UUID, list[UUID]] = defaultdict(list)
    for tenant_id, package_id in due:
        per_tenant[tenant_id].append(package_id)
    removed = 0
    for tenant_id, package_ids in per_tenant.items():
        with tenant_session(db, tenant_id) as session:
            patrons = dict(
                session.execute(
                    select(SubjectExportPackage.id, SubjectExportPackage.patron_id).where(
                        SubjectExportPackage.tenant_id == tenant_id, SubjectExportPackage.id.in_(package_ids)
                    )
                ).all()
            )
            removed += remove_packages(session, package_ids)
            for package_id in package_ids:
                audit.record(
                    session,
                    Action.SUBJECT_EXPORT_EXPIRED,
                    (TARGET, package_id),
                    actor=SYSTEM,
                    details={"patron_id": patrons.get(package_id), "package_key_destroyed": True},
                )
    return removed


def expire_now(session: TenantSession, package_id: UUID) -> None:
    """Move a package's expiry to now (tests, and a patron who asks to withdraw their link)."""
    session.execute(
        update(SubjectExportPackage)
        .where(SubjectExportPackage.tenant_id == session.tenant_id, SubjectExportPackage.id == package_id)
        .values(expires_at=func.now() - timedelta(seconds=1))  # the database clock, which expiry is read by
    )
