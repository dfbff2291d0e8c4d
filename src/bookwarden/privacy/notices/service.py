"""The institution's privacy notice: publish versions, read the one in force, check and record it at collection.

Transparency at collection (the statement's Notice principle). Each institution publishes its own notice in
versions (text, label, the "last updated" date it states, whether the change is material and, if so, what
changed). The version in force is the latest published; anyone reads it without signing in
(GET /api/v1/portal/{institution}/privacy-notice).

Wherever data is collected, the version in force is shown in the answer and recorded with what was
collected: a self-registration and the request form leave a receipt (models.py NoticeReceipt), a cookie
choice and a consent record carry the label on their own rows. A submission may name the version it was
shown; one that names another version than the one in force is refused (409 notice-version-stale, nothing
stored), because agreeing to a notice the institution has since replaced is agreeing to nothing it still
says: the answer names the version in force and where to read it, and the form is sent again. Until an
institution publishes a notice here, the label a cookie choice or consent names is recorded as given (the
institution's notice lives elsewhere) and registrations and forms record none.

A version flagged material queues a job (MAIL_JOB): every patron with an address that counts (staff entered
it, or its owner confirmed it; an erased patron has none) is mailed once what changed and where to read it,
a service mail (not marketing: it cannot be unsubscribed from). The job goes through the patrons in batches,
each one transaction with its mail, its event and the cursor it leaves, so a crash never mails anyone twice
and the next attempt resumes from the cursor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import select

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.clock import db_now
from bookwarden.core.errors import BookwardenError, Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.core.sensitive import check_fields
from bookwarden.core.text import LINES, is_line
from bookwarden.db.session import Database, TenantSession, tenant_session
from bookwarden.identity.links import public_url_for
from bookwarden.jobs.service import enqueue
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import queue_mail
from bookwarden.privacy.notices.models import Collection, NoticeReceipt, PrivacyNoticeVersion
from bookwarden.tenancy.models import Tenant

TARGET = "privacy_notice"
MAIL_JOB = "privacy.notice_change_mail"
MAIL_BATCH = 200
MAX_LABEL = 40
MAX_TEXT = 100_000
MAX_SUMMARY = 5_000
CHANGE_TEMPLATE = "privacy_notice_changed.txt"


class StaleNotice(BookwardenError):
    """The submission names a version of the notice other than the one in force: nothing was stored."""

    slug, status, title = "notice-version-stale", 409, "Privacy notice has changed"

    def __init__(self, named: str, current: PrivacyNoticeVersion, url: str) -> None:
        super().__init__(
            f"notice_version: {named!r} is not the privacy notice in force; version {current.version!r} (last "
            f"updated {current.last_updated.isoformat()}) is, at {url}. Read it and send the form again naming "
            "it; nothing you sent was stored"
        )


class NoticeShown(BaseModel):
    """What a collecting form answers with: the version in force when the data was collected, and where to read it."""

    version: str
    last_updated: date
    url: str


class NoticeOut(NoticeShown):
    institution: str
    text: str
    material: bool
    change_summary: str | None
    published_at: datetime


class VersionOut(BaseModel):
    id: UUID
    version: str
    last_updated: date
    material: bool
    change_summary: str | None
    published_at: datetime
    published_by: UUID
    in_force: bool
    mailed: int
    mail_done_at: datetime | None


def _is_lines(value: str, max_length: int) -> bool:
    return len(value) <= max_length and re.fullmatch(LINES, value) is not None


def notice_url(slug: str) -> str:
    return public_url_for(f"/api/v1/portal/{slug}/privacy-notice")


def in_force(session: TenantSession) -> PrivacyNoticeVersion | None:
    """The latest published version of the session's institution; None before its first."""
    return session.scalars(
        select(PrivacyNoticeVersion)
        .where(PrivacyNoticeVersion.tenant_id == session.tenant_id)
        .order_by(PrivacyNoticeVersion.seq.desc())
        .limit(1)
    ).first()


def shown(session: TenantSession, version: PrivacyNoticeVersion | None) -> NoticeShown | None:
    if version is None:
        return None
    slug = session.get(Tenant, session.tenant_id).slug
    return NoticeShown(version=version.version, last_updated=version.last_updated, url=notice_url(slug))


def read_in_force(session: TenantSession, actor: Principal | None = None) -> NoticeOut:
    """The notice in force, as anyone reads it (no sign-in: it is public); the read is recorded."""
    current = in_force(session)
    tenant = session.get(Tenant, session.tenant_id)
    if current is None:
        raise NotFound(f"institution {tenant.slug} has published no privacy notice here; ask the library for it")
    audit.record(
        session, Action.PRIVACY_NOTICE_VIEWED, (TARGET, current.id), actor=actor, details={"version": current.version}
    )
    return NoticeOut(
        institution=tenant.slug,
        version=current.version,
        last_updated=current.last_updated,
        url=notice_url(tenant.slug),
        text=current.notice_text,
        material=current.material,
        change_summary=current.change_summary,
        published_at=current.published_at,
    )


def versions(session: TenantSession, actor: Principal) -> list[VersionOut]:
    """Every version the institution published, newest first, with how far each material change was mailed."""
    authorize(actor, Permission.PRIVACY_NOTICE_MANAGE)
    rows = list(
        session.scalars(
            select(PrivacyNoticeVersion)
            .where(PrivacyNoticeVersion.tenant_id == session.tenant_id)
            .order_by(PrivacyNoticeVersion.seq.desc())
        )
    )
    audit.record(session, Action.PRIVACY_NOTICE_LISTED, (TARGET, None), actor=actor, details={"count": len(rows)})
    return [_version_out(row, row is rows[0]) for row in rows]


def _version_out(row: PrivacyNoticeVersion, current: bool) -> VersionOut:
    return VersionOut(
        id=row.id,
        version=row.version,
        last_updated=row.last_updated,
        material=row.material,
        change_summary=row.change_summary,
        published_at=row.published_at,
        published_by=row.published_by,
        in_force=current,
        mailed=row.mailed,
        mail_done_at=row.mail_done_at,
    )


def publish(
    session: TenantSession,
    actor: Principal,
    *,
    version: str,
    notice_text: str,
    material: bool,
    change_summary: str | None = None,
    last_updated: date | None = None,
) -> VersionOut:
    """Publish a new version: it is in force from this transaction's commit. Material: patrons are mailed."""
    authorize(actor, Permission.PRIVACY_NOTICE_MANAGE)
    # The API's own text rules (core/text.py), so what its schema accepts the service accepts too.
    if not is_line(version, MAX_LABEL):
        raise InvalidInput(f"version: a label of one line, at most {MAX_LABEL} characters (e.g. 2027-01)")
    if not _is_lines(notice_text, MAX_TEXT):
        raise InvalidInput(f"text: the notice itself, at most {MAX_TEXT:,} characters")
    summary = change_summary or None
    if material and summary is None:
        raise InvalidInput("change_summary: a material change tells patrons what changed; say it in a few lines")
    if summary is not None and not _is_lines(summary, MAX_SUMMARY):
        raise InvalidInput(f"change_summary: what changed, at most {MAX_SUMMARY:,} characters")
    check_fields({"version": version, "text": notice_text, "change_summary": summary})
    taken = session.scalar(
        select(PrivacyNoticeVersion.id).where(
            PrivacyNoticeVersion.tenant_id == session.tenant_id, PrivacyNoticeVersion.version == version
        )
    )
    if taken is not None:
        raise Conflict(f"version: {version!r} was published already; a new version takes a new label")
    today = db_now(session).date()
    if last_updated is not None and last_updated > today:
        raise InvalidInput("last_updated: a date in the future; the notice is in force from when it is published")
    row = PrivacyNoticeVersion(
        tenant_id=session.tenant_id,
        version=version,
        notice_text=notice_text,
        last_updated=last_updated or today,
        material=material,
        change_summary=summary,
        published_by=actor.id,
        published_by_person=actor.person,
        mailed=0,
    )
    session.add(row)
    session.flush()
    job = (
        enqueue(session, MAIL_JOB, {"tenant_id": str(session.tenant_id), "version_id": str(row.id)})
        if material
        else None
    )
    audit.record(
        session,
        Action.PRIVACY_NOTICE_PUBLISHED,
        (TARGET, row.id),
        actor=actor,
        details={
            "version": version,
            "last_updated": row.last_updated.isoformat(),
            "material": material,
            "change_mail_job": job.id if job is not None else None,
        },
    )
    return _version_out(row, True)


# -- at collection -----------------------------------------------------------------------------


def checked(session: TenantSession, named: str | None) -> PrivacyNoticeVersion | None:
    """The version in force, after checking the one the submission names (if it names one) is that version.

    Raises StaleNotice for another version. None when the institution has published no notice here."""
    current = in_force(session)
    if current is not None and named is not None and named != current.version:
        slug = session.get(Tenant, session.tenant_id).slug
        raise StaleNotice(named, current, notice_url(slug))
    return current


def label_to_record(session: TenantSession, named: str | None) -> str | None:
    """The label a cookie choice or consent records: the version in force (checked against the one named);
    before any is published here, the label named, as given."""
    current = checked(session, named)
    return current.version if current is not None else named


def record_receipt(
    session: TenantSession,
    version: PrivacyNoticeVersion | None,
    collection: Collection,
    patron_id: UUID,
    request_id: UUID | None = None,
) -> NoticeReceipt | None:
    """Record that `version` was in force when data was collected for `patron_id` (nothing when none was).
    No event of its own: the collecting action's event names the version."""
    if version is None:
        return None
    receipt = NoticeReceipt(
        tenant_id=session.tenant_id,
        version_id=version.id,
        collection=Collection(collection).value,
        patron_id=patron_id,
        request_id=request_id,
    )
    session.add(receipt)
    session.flush()
    return receipt


# -- the material-change mail ------------------------------------------------------------------


@dataclass(frozen=True)
class MailProgress:
    mailed: int
    done: bool


def mail_change(db: Database, tenant_id: UUID, version_id: UUID, batch: int = MAIL_BATCH) -> MailProgress:
    """Mail every patron of the institution with an address that counts about a material change, batch by batch.

    Each batch is one transaction: its mail, the cursor (the last patron id gone through) and one event with
    the ids mailed. Idempotent: a version mailed through is left alone, and a new run starts after the cursor.
    """
    total = 0
    while True:
        with tenant_session(db, tenant_id) as session:
            version = session.get(PrivacyNoticeVersion, (tenant_id, version_id), with_for_update=True)
            if version is None or not version.material or version.mail_done_at is not None:
                return MailProgress(total, True)
            query = select(Patron).where(Patron.tenant_id == tenant_id)
            if version.mail_cursor is not None:
                query = query.where(Patron.id > version.mail_cursor)
            patrons = list(session.scalars(query.order_by(Patron.id).limit(batch)))
            tenant = session.get(Tenant, tenant_id)
            mailed = []
            for patron in patrons:
                address = library.email_on_file(session, patron)
                if address is None:
                    continue  # none, not confirmed, or erased: nobody to tell at this address
                queue_mail(
                    session,
                    to=address,
                    subject=f"[{tenant.name}] our privacy notice has changed (version {version.version})",
                    template=CHANGE_TEMPLATE,
                    context={
                        "institution": tenant.name,
                        "version": version.version,
                        "last_updated": version.last_updated.isoformat(),
                        "summary": version.change_summary,
                        "url": notice_url(tenant.slug),
                    },
                    category=MailCategory.SERVICE,
                )
                mailed.append(patron.id)
            if patrons:
                version.mail_cursor = patrons[-1].id
            version.mailed += len(mailed)
            finished = len(patrons) < batch
            if finished:
                version.mail_done_at = db_now(session)
            audit.record(
                session,
                Action.PRIVACY_NOTICE_CHANGE_MAILED,
                (TARGET, version.id),
                actor=SYSTEM,
                details={"version": version.version, "count": len(mailed), "patron_ids": mailed, "done": finished},
            )
        total += len(mailed)
        if finished:
            return MailProgress(total, True)
