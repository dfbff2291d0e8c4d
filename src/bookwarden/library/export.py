"""Bulk export of an institution's patrons: a sensitive action under maker-checker.

One holder of patrons.export asks (access/approvals/service.py records the request), another approves,
and only then may the one who asked download the file: once, within 24 hours of the approval.
Every patron of the tenant is streamed decrypted, a page at a time (never all in memory), as
JSON lines or CSV (cells a spreadsheet would run as a formula start with ').

"Once" is kept by the audit trail itself: a download leaves patron.exported with the approval as
its target, and a download is refused when such an event exists. The trail is append-only, so
nothing can make an approval usable again; the approval row is locked for the whole download, so
two downloads at the same moment cannot both pass the check.

The file leaves the platform, and once it has left nothing holds where it goes: the export is treated
as sharing beyond the institution. It names a purpose (approved with the format), and at download it
asks the sharing gate (library/guards.py, filled by privacy/consent/hooks.py) which patrons must be left
out: those who object to disclosure to third parties or to the purpose, and those whose processing is
restricted. Their rows are not in the file (the others are: one patron's objection does not stop the
institution's export), patron.exported counts them, and the gate records its reasons. Direct marketing
is refused as a purpose when the export is asked, and again at download.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from pydantic import BaseModel
from sqlalchemy import select

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction, require_approval
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.audit.search import MEDIA_TYPES, ExportFormat, events
from bookwarden.core.authorize import authorize
from bookwarden.core.csv_safety import spreadsheet_safe
from bookwarden.core.errors import Conflict, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import SharingPath, checked_purpose
from bookwarden.db.session import Database, TenantSession
from bookwarden.library import records, schemas
from bookwarden.library.approvals import DEFAULT_PURPOSE
from bookwarden.library.guards import sharing_gate
from bookwarden.library.models import Patron

log = structlog.get_logger()
BATCH = 200  # patrons decrypted and sent per page
VALID_FOR = timedelta(hours=24)
WHAT = "a bulk export of patrons"
FIELDS = tuple(schemas.PatronOut.model_fields)
__all__ = ["DEFAULT_PURPOSE", "MEDIA_TYPES", "ExportFormat", "ask", "open_download"]


def ask(
    session: TenantSession, principal: Principal, fmt: ExportFormat, purpose: str = DEFAULT_PURPOSE
) -> ApprovalRequest:
    params = {"format": ExportFormat(fmt).value, "purpose": checked_purpose(purpose)}
    return approvals.ask(session, principal, SensitiveAction.EXPORT_PATRONS, params)


def open_download(
    db: Database,
    scope: Callable[[], AbstractContextManager[TenantSession]],
    principal: Principal,
    approval_id: UUID,
    context: audit.Context,
) -> tuple[ExportFormat, Iterator[bytes]]:
    """The format and the chunks of the export approved as `approval_id`, once every check passed
    (a refusal is raised here, before anything is answered). `scope` opens the tenant session;
    `context` says who exports and from where (the chunks are made outside the request's context)."""
    authorize(principal, Permission.PATRONS_EXPORT)
    chunks = _download(db, scope, principal, approval_id, context)
    fmt = next(chunks)  # the first thing yielded, once the approval is claimed
    assert isinstance(fmt, ExportFormat)
    return fmt, chunks  # type: ignore[return-value]


def _download(
    db: Database,
    scope: Callable[[], AbstractContextManager[TenantSession]],
    principal: Principal,
    approval_id: UUID,
    context: audit.Context,
) -> Iterator[ExportFormat | bytes]:
    """The export's format, then its chunks.

    patron.exported is recorded when the stream ends, with the number of patrons sent: also when the
    reader stops early (what it received was exported all the same). If the database fails mid-stream
    the transaction is lost, so the failure is recorded in one of its own, and the approval is spent.
    """
    sent, completed, tenant_id, fmt, excluded = 0, False, None, None, 0
    try:
        with scope() as session:
            fmt, purpose = _claim(session, principal, approval_id)
            # Asked once, for every patron, in the download's transaction: the rows left out are the
            # ones the gate names, and its event (privacy.sharing.checked) commits with patron.exported.
            # Before the claim counts: a gate that cannot answer spends no approval.
            with audit.acting(context):
                decision = sharing_gate()(session, SharingPath.BULK_EXPORT, purpose, None, actor=principal)
            excluded = len(decision.excluded)
            tenant_id = session.tenant_id
            yield fmt
            try:
                yield _header(fmt)
                for page in _pages(session, decision.allows):
                    chunk = _rows(fmt, page)
                    sent += len(page)  # counted when handed over: a reader may stop at this very yield
                    yield chunk
                completed = True
            except GeneratorExit:
                pass  # the reader went away; the event below still commits
            with audit.acting(context):
                details = {**_details(approval_id, fmt, sent, completed), "excluded": excluded}
                audit.record(session, Action.PATRON_EXPORTED, ("approval", approval_id), details=details)
    except Exception as exc:
        if tenant_id is not None:  # claimed: a refusal before that is recorded as one by the API
            _record_failure(db, tenant_id, approval_id, fmt, sent, context, exc)
        raise


def _claim(session: TenantSession, principal: Principal, approval_id: UUID) -> tuple[ExportFormat, str]:
    """Refuse unless `principal` asked for this export, it was approved less than 24 hours ago, and
    it was never downloaded; lock the approval until the download's transaction ends."""
    approval = session.get(ApprovalRequest, (session.tenant_id, approval_id))
    if approval is None or approval.action != SensitiveAction.EXPORT_PATRONS or approval.requested_by != principal.id:
        # Someone else's export is "not found": its existence is not theirs to learn.
        raise NotFound(f"no patron export {approval_id} asked by you")
    fmt = ExportFormat(approval.params["format"])
    if "purpose" not in approval.params:
        raise Conflict("this export was approved without a purpose, which every export now names: ask again")
    purpose = checked_purpose(approval.params["purpose"])
    require_approval(approval, SensitiveAction.EXPORT_PATRONS, {"format": fmt.value, "purpose": purpose}, WHAT)
    assert approval.decided_at is not None  # approved means decided
    if approval.decided_at + VALID_FOR <= datetime.now(UTC):
        raise Conflict(
            f"the approval of this export is more than {VALID_FOR // timedelta(hours=1)} hours old; ask again"
        )
    locked = session.scalar(
        select(ApprovalRequest.id)
        .where(ApprovalRequest.tenant_id == session.tenant_id, ApprovalRequest.id == approval_id)
        .with_for_update(skip_locked=True)
    )
    if locked is None:
        raise Conflict("this export is being downloaded right now; it can be downloaded only once")
    downloaded = session.scalar(
        select(events.c.seq)
        .where(
            events.c.target_id == approval_id,
            events.c.target_kind == "approval",
            events.c.action == Action.PATRON_EXPORTED.value,
        )
        .limit(1)
    )
    if downloaded is not None:
        raise Conflict("this export was downloaded already; an approval allows one download: ask again")
    return fmt, purpose


def _pages(session: TenantSession, allows: Callable[[UUID], bool]) -> Iterator[list[BaseModel]]:
    """Every patron of the tenant the gate `allows`, decrypted, a page at a time in id order (keyset paging).
    A patron left out is never decrypted.

    Not records.list_page: that records patron.listed with every id, once per page; here the one
    event is patron.exported with the count.
    """
    table = Patron.__table__
    # Not the patrons pending deletion: hidden from every read until a second person undoes it.
    query = select(*records._columns(records.PATRONS)).where(
        table.c.tenant_id == session.tenant_id, records._live(records.PATRONS)
    )
    last: UUID | None = None
    while True:
        page = query if last is None else query.where(table.c.id > last)
        found = records._records(session, page.order_by(table.c.id).limit(BATCH))
        if not found:
            return
        last = found[-1][0]["id"]
        shared = [record for record in found if allows(record[0]["id"])]
        if shared:
            yield records._open(session, records.PATRONS, shared)


def _header(fmt: ExportFormat) -> bytes:
    return _csv_lines([FIELDS]) if fmt is ExportFormat.CSV else b""


def _rows(fmt: ExportFormat, page: list[BaseModel]) -> bytes:
    if fmt is ExportFormat.JSONL:
        return "".join(patron.model_dump_json() + "\n" for patron in page).encode()
    lines = []
    for patron in page:
        values = patron.model_dump(mode="json")
        lines.append(spreadsheet_safe(values[name] for name in FIELDS))
    return _csv_lines(lines)


def _csv_lines(lines: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)  # None is written as an empty cell
    return buffer.getvalue().encode()


def _details(approval_id: UUID, fmt: ExportFormat | None, sent: int, completed: bool) -> dict[str, Any]:
    # The count and the approval, never a value: the trail must not become a copy of the export.
    return {"approval_id": approval_id, "format": fmt and fmt.value, "count": sent, "completed": completed}


def _record_failure(db, tenant_id, approval_id, fmt, sent, context, exc) -> None:
    details = {**_details(approval_id, fmt, sent, False), "error": type(exc).__name__}
    try:
        with audit.acting(context):
            audit.record_now(
                db,
                Action.PATRON_EXPORTED,
                ("approval", approval_id),
                outcome=Outcome.FAILED,
                details=details,
                tenant_id=tenant_id,
            )
    except Exception as again:
        # The export already failed; not being able to say so must not hide why, but it is loud.
        log.error("library.export_failure_not_recorded", error_type=type(again).__name__)


def every_patron(session: TenantSession) -> Iterator[list[BaseModel]]:
    """Every live patron of the institution, decrypted, a page at a time: the institution's own final export
    when it leaves the platform (backup/offboarding.py). It goes back to the controller itself, not beyond
    it, so no sharing gate leaves anyone out; the offboarding records it."""
    return _pages(session, lambda _: True)
