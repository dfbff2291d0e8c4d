"""Deleting a patron by staff: two people and a grace period, because destroying the key cannot be undone.

Staff deleting a patron (DELETE /api/v1/patrons/{id}) only asks for it. The patron is at once hidden from
every read, list, lookup and export, with every record about them, and nothing about them can change
(library/records.py `_live`); their subject key is kept. A maker-checker request (access/approvals,
SensitiveAction.DELETE_PATRON) records who asked. Within the grace period (BOOKWARDEN_PATRON_DELETION_GRACE_DAYS,
7 days by default), a second person holding patrons.write, never the one who asked through any of their
sessions or tokens, either confirms the deletion or undoes it; the one who asked may do neither.

When the period ends, the hourly job (library/jobs.py) carries out each deletion due: a confirmed one is
destroyed (the rows, with every record that cascades from them, and then the subject key, so that no copy in
any backup can be read again); one that nobody confirmed lapses, and the patron is back as they were. Nothing
irreversible ever happens on one person's word, and until the period ends a mistake costs nothing.

Every state is a row: the patron's deletion_due_at and deletion_approval_id, and the approval. A crash
anywhere leaves either a pending deletion (which the job finds) or a destroyed key over rows still there
(the key is destroyed last, and commits in the keyring at once; the job finds those rows again and
deletes them). A legal hold refuses the asking, and stops the destruction for as long as it lasts.

An erasure under an approved data-subject request (privacy/subjects/erasure.py) does not come here: it
went through the request lifecycle, where a second person approved it, and the law asks it be done
without undue delay, so it destroys at once (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from bookwarden.access.approvals import service as approvals
from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.audit.events import Action
from bookwarden.audit.record import record
from bookwarden.core import faults
from bookwarden.core.authorize import authorize
from bookwarden.core.clock import db_now
from bookwarden.core.config import get_settings
from bookwarden.core.errors import BookwardenError, Conflict, NotFound, SegregationOfDutiesError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.library.guards import check_patron_deletion
from bookwarden.library.models import Patron
from bookwarden.tenancy.models import Tenant

log = structlog.get_logger()

DUE_JOB = "library.patron_deletions_due"
DUE_EVERY = timedelta(hours=1)
DUE_BATCH = 200
APPROVED = "approved"


def grace_period() -> timedelta:
    return timedelta(days=get_settings().patron_deletion_grace_days)


@dataclass(frozen=True)
class PendingDeletion:
    patron_id: UUID
    approval_id: UUID
    due_at: datetime
    confirmed: bool


def _pending(deletion: Patron, approval: ApprovalRequest | None) -> PendingDeletion:
    assert deletion.deletion_due_at is not None and deletion.deletion_approval_id is not None
    confirmed = approval is not None and approval.status == APPROVED
    return PendingDeletion(deletion.id, deletion.deletion_approval_id, deletion.deletion_due_at, confirmed)


def ask(session: TenantSession, actor: Principal, patron_id: UUID) -> PendingDeletion:
    """Hide the patron and freeze their record, keep their key, and wait for a second person."""
    authorize(actor, Permission.PATRONS_WRITE)
    patron = session.get(Patron, (session.tenant_id, patron_id), with_for_update=True)
    if patron is None or patron.deletion_due_at is not None:
        # Being deleted already reads as gone: the patron is hidden from everyone until it is undone.
        raise NotFound(f"no patron {patron_id}")
    check_patron_deletion(session, patron_id)  # a legal hold keeps the patron (library/guards.py)
    approval = approvals.ask(session, actor, SensitiveAction.DELETE_PATRON, {"patron_id": str(patron_id)})
    patron.deletion_due_at = db_now(session) + grace_period()
    patron.deletion_approval_id = approval.id
    session.flush()
    details = {"approval_id": approval.id, "due_at": patron.deletion_due_at.isoformat()}
    record(session, Action.PATRON_DELETION_ASKED, ("patron", patron_id), details=details)
    return _pending(patron, approval)


def confirm(session: TenantSession, actor: Principal, patron_id: UUID) -> PendingDeletion:
    """A second person agrees: the key and the rows are destroyed when the grace period ends."""
    authorize(actor, Permission.PATRONS_WRITE)
    patron = _pending_patron(session, patron_id)
    assert patron.deletion_approval_id is not None
    # The approvals service refuses the one who asked (any of their credentials) and calls `confirmed` below.
    approval = approvals.approve(session, actor, patron.deletion_approval_id)
    return _pending(patron, approval)


def confirmed(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    """The kind's carrying out (library/approvals.py), however the approval came: here or at /approvals."""
    patron_id = UUID(request.params["patron_id"])
    patron = session.get(Patron, (session.tenant_id, patron_id), with_for_update=True)
    if patron is None or patron.deletion_approval_id != request.id or patron.deletion_due_at is None:
        raise Conflict(f"the deletion of patron {patron_id} was undone or has lapsed; there is nothing to confirm")
    if patron.deletion_due_at <= db_now(session):
        raise Conflict(f"the grace period of this deletion ended at {patron.deletion_due_at.isoformat()}")
    details = {"approval_id": request.id, "due_at": patron.deletion_due_at.isoformat()}
    record(session, Action.PATRON_DELETION_CONFIRMED, ("patron", patron_id), details=details)


def undo(session: TenantSession, actor: Principal, patron_id: UUID) -> None:
    """A second person restores the patron within the grace period, confirmed or not."""
    authorize(actor, Permission.PATRONS_WRITE)
    patron = _pending_patron(session, patron_id)
    assert patron.deletion_due_at is not None
    if patron.deletion_due_at <= db_now(session):
        raise Conflict(
            f"the grace period of this deletion ended at {patron.deletion_due_at.isoformat()}: it can no longer "
            "be undone"
        )
    approval = session.get(ApprovalRequest, (session.tenant_id, patron.deletion_approval_id), with_for_update=True)
    if approval is None:
        raise Conflict(f"the deletion of patron {patron_id} has no approval request; nothing was changed")
    if actor.same_party(approval.requested_by, approval.requested_by_person):
        raise SegregationOfDutiesError(
            "the one who deleted the patron cannot undo it, through any of their sessions or tokens: another "
            "holder of patrons.write does, within the grace period"
        )
    if approval.status == "pending" and approval.expires_at > db_now(session):
        approvals.reject(session, actor, approval.id)  # not left for someone to confirm later
    patron.deletion_due_at, patron.deletion_approval_id = None, None
    session.flush()
    record(session, Action.PATRON_DELETION_UNDONE, ("patron", patron_id), details={"approval_id": approval.id})


def _pending_patron(session: TenantSession, patron_id: UUID) -> Patron:
    patron = session.get(Patron, (session.tenant_id, patron_id), with_for_update=True)
    if patron is None or patron.deletion_due_at is None:
        raise NotFound(f"no deletion of patron {patron_id} is pending")
    return patron


# -- the end of the grace period (the hourly job) -------------------------------------------------------------


@dataclass
class Outcome:
    destroyed: int = 0
    lapsed: int = 0
    held: int = 0


def carry_out_due(db: Database, batch: int = DUE_BATCH) -> Outcome:
    """Every deletion whose grace period ended, in every institution: destroy the confirmed, lapse the rest.

    Each batch commits with its events; one institution's failure does not stop the others (the job fails
    at the end, and the next run resumes: every step can run again)."""
    with platform_session(db) as session:
        tenant_ids = list(session.scalars(select(Tenant.id).order_by(Tenant.created_at, Tenant.id)))
    outcome, failed = Outcome(), 0
    for tenant_id in tenant_ids:
        try:
            _due_in(db, tenant_id, batch, outcome)
        except Exception as exc:
            log.error("library.patron_deletions_failed", tenant_id=str(tenant_id), error_type=type(exc).__name__)
            failed += 1
    if failed:
        raise RuntimeError(f"pending patron deletions failed in {failed} institution(s); the next run resumes")
    return outcome


def _due_in(db: Database, tenant_id: UUID, batch: int, outcome: Outcome) -> None:
    after: UUID | None = None
    while True:
        with tenant_session(db, tenant_id) as session:
            query = select(Patron).where(Patron.tenant_id == tenant_id, Patron.deletion_due_at <= db_now(session))
            if after is not None:
                query = query.where(Patron.id > after)
            due = list(session.scalars(query.order_by(Patron.id).limit(batch).with_for_update(skip_locked=True)))
            for patron in due:
                approval = session.get(ApprovalRequest, (tenant_id, patron.deletion_approval_id))
                if approval is None or approval.status != APPROVED:
                    _lapse(session, patron, approval)
                    outcome.lapsed += 1
                    continue
                try:
                    with session.begin_nested():
                        check_patron_deletion(session, patron.id)
                        _destroy(session, patron, approval)
                    outcome.destroyed += 1
                except (BookwardenError, SQLAlchemyError) as exc:
                    # A legal hold placed during the period: kept, hidden, until it lifts. The kind only: a
                    # message may quote a value.
                    kind = exc.slug if isinstance(exc, BookwardenError) else type(exc).__name__
                    log.warning("library.patron_deletion_waits", patron_id=str(patron.id), error=kind)
                    outcome.held += 1
        if len(due) < batch:
            return
        after = due[-1].id


def _lapse(session: TenantSession, patron: Patron, approval: ApprovalRequest | None) -> None:
    """Nobody confirmed within the period: the one who asked alone destroys nothing; the patron is back."""
    approval_id = patron.deletion_approval_id
    patron.deletion_due_at, patron.deletion_approval_id = None, None
    session.flush()
    details = {"approval_id": approval_id, "approval_status": approval.status if approval is not None else None}
    record(session, Action.PATRON_DELETION_LAPSED, ("patron", patron.id), actor=SYSTEM, details=details)


def _destroy(session: TenantSession, patron: Patron, approval: ApprovalRequest) -> None:
    """The rows (every record about the patron cascades from theirs), then the subject key, last: it commits
    in the keyring at once, so a failure before it leaves the deletion pending, and one after it leaves
    unreadable rows the next run deletes."""
    patron_id = patron.id
    session.delete(patron)
    session.flush()
    details = {
        "approval_id": approval.id,
        "asked_by": approval.requested_by,
        "confirmed_by": approval.decided_by,
        "subject_key_destroyed": True,
    }
    record(session, Action.PATRON_DELETED, ("patron", patron_id), actor=SYSTEM, details=details)
    faults.point("deletion.rows_deleted")
    # A deleted patron is gone from backups too: without the key, no copy can be read.
    session.keyring.shred_subject(session.tenant_id, patron_id)
    faults.point("deletion.key_shredded")
