"""The unauthenticated request form, and requests sent to the platform without naming an institution.

Anyone may ask, without an account: they name the institution, say what they want and identify
themselves by email address, institutional id or barcode (found through the blind indexes, never
by decrypting). A one-time code is then mailed to the address ON FILE for the patron found, never
to an address the requester typed, and the request only counts as verified once the code comes
back. Before that, nothing about the patron is disclosed:

- the answer is the same whether or not a patron matched (no enumeration): when none did, a decoy
  code is stored, which behaves like a real code nobody received (it expires, counts tries, never
  verifies), and no mail leaves;
- a code is 6 digits, stored as a keyed hash (HMAC under the institution's index key, bound to
  its challenge), expires after 30 minutes and allows 5 tries;
- every form sent counts against the sender's network address (identity/throttle.py, a count of
  its own, never taken back: taking back only those that matched would show who exists).

Which addresses identify anyone: only those that count (library/records.py email_counts), entered by
the institution's staff or confirmed by their owner. A self-registration's address is nobody's until
the link mailed to it is opened (privacy/registration/service.py), so registering with someone else's
address adds no match and takes none away. Several patrons may still share an address that counts (a
household, a record entered twice); the form then does not fall silent: the code goes to that address,
as for one patron (whoever holds the mailbox is who asks, and the mail is the same), and one request is
made per patron, all confirmed by the one code and marked with one shared_address_group, for the
institution's officer to settle: approve the requester's, deny the others with the reason. Nothing of
this shows in the answer or its time, which are the same for no match, one match and several.

The institution's privacy notice in force is shown in the answer (the same whoever matched) and recorded
with every request the form made (privacy/notices/service.py); a form naming another version is refused
before anything is looked up.

Without an institution, the platform (the processor) cannot place the request: it keeps a
pending inquiry, with the contact address sealed under a key of its own and a random tracking
reference for the requester, and answers asking which institution. Named later with that
reference, the inquiry is forwarded into that institution's queue exactly as if the form had
named it, the inquiry records where and when, and its contact key is shredded. An inquiry never
named lapses after 30 days (hourly job), and its key is shredded too.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import structlog
from pydantic import BaseModel
from sqlalchemy import or_, select, update

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action, Outcome
from bookwarden.core.clock import db_now
from bookwarden.core.errors import Conflict, NotFound
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.fields import decrypt_field, encrypt_field
from bookwarden.crypto.keyring import KeyDestroyed, blind_index
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import throttle
from bookwarden.identity.links import PLATFORM
from bookwarden.identity.signin import service as signin
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.library.schemas import LookupField
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import ADDRESS, queue_mail
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.notices.models import Collection
from bookwarden.privacy.notices.service import NoticeShown
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import (
    InquiryStatus,
    PrivacyInquiry,
    PrivacyRequest,
    RequestChallenge,
    RequestChannel,
    RequestKind,
    RequestState,
    Verification,
)
from bookwarden.tenancy.models import Tenant, TenantStatus

log = structlog.get_logger()

CODE_DIGITS = 6
# At most this many requests from one form whose address is on file for several patrons (one per patron);
# bounded so a form's work, and so its answer time, stays under the floor below. Beyond it the officer is
# told (patrons_beyond_limit) and registers the rest on the requester's behalf.
MATCH_LIMIT = 10
CODE_VALID = timedelta(minutes=30)
CODE_TRIES = 5
# The form answers no sooner than this after it began looking, whether or not a patron matched. A
# match does more work (the request row, the code mail sealed and queued, their audit events), so
# without a floor its answer would come later and tell who is a patron. `python -m bench
# form_timing` measures both paths with and without it.
ANSWER_FLOOR = 0.4  # seconds
INQUIRY_KEPT = timedelta(days=30)
INQUIRY_TABLE = "privacy_inquiries"
INQUIRY_TARGET = "privacy_inquiry"
LAPSE = "privacy.inquiries_lapse"
LAPSE_EVERY = timedelta(hours=1)


class FormStatus(enum.StrEnum):
    CODE_SENT = "verification_pending"  # a code went to the address on file, if a patron matched
    INSTITUTION_NEEDED = "institution_needed"  # the platform asks which institution holds the data


class FormAnswer(BaseModel):
    """The one answer of the form: the same whether or not a patron matched."""

    status: FormStatus
    detail: str
    institution: str | None = None
    verification_id: UUID | None = None
    inquiry_reference: str | None = None
    # The institution's privacy notice in force when the form was received, recorded with each request it made.
    privacy_notice: NoticeShown | None = None


class CodeResult(enum.StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"  # also an unknown verification id, or a decoy: nothing tells them apart
    EXPIRED = "expired"  # or used already
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class CodeCheck:
    result: CodeResult
    tries_left: int = 0
    request: requests.RequestSummary | None = None


# -- the form --------------------------------------------------------------------------------


def submit(
    db: Database,
    *,
    institution: str | None,
    kind: RequestKind,
    by: LookupField,
    value: str,
    source_address: str,
    objection_scope: str | None = None,
    corrections: dict[str, Any] | None = None,
    notice_version: str | None = None,
) -> FormAnswer:
    """Receive a form: a code to the address on file when a patron matches, the same answer when none does.

    The institution's privacy notice in force is shown in the answer and recorded with every request made; a
    form naming another version than the one in force is refused (StaleNotice) before anything is looked up.

    Raises TooManyAttempts when the sender's address must wait, InvalidInput for a form that is not
    valid whoever it names (checked before anything is looked up, so the refusal tells nothing).
    """
    _admit(db, source_address)
    kind = RequestKind(kind)
    scope, changes = requests.checked_details(kind, objection_scope, corrections)
    if institution is None:
        return _inquiry(db, kind, LookupField(by), value, scope)
    tenant = _institution(db, institution)
    return _submit_in(db, tenant, kind, LookupField(by), value, scope, changes, None, notice_version)


def verify(db: Database, *, institution: str, verification_id: UUID, code: str) -> CodeCheck:
    """Check a code. Every failure is counted on the challenge and recorded; a decoy never verifies."""
    with platform_session(db) as session:
        tenant = signin.institution(session, institution)
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        return CodeCheck(CodeResult.WRONG, CODE_TRIES)  # what an unknown verification id gets
    with tenant_session(db, tenant.id) as session:
        challenge = session.scalars(
            select(RequestChallenge)
            .where(RequestChallenge.tenant_id == tenant.id, RequestChallenge.id == verification_id)
            .with_for_update()
        ).first()
        if challenge is None:
            return CodeCheck(CodeResult.WRONG, CODE_TRIES)
        now = db_now(session)
        if challenge.verified_at is not None or challenge.expires_at <= now:
            return _refused(session, challenge, CodeResult.EXPIRED)
        if challenge.attempts >= CODE_TRIES:
            return _refused(session, challenge, CodeResult.EXHAUSTED)
        challenge.attempts += 1
        right = hmac.compare_digest(_code_hash(session, challenge.id, code), challenge.code_hash)
        if not right or challenge.request_id is None:
            return _refused(session, challenge, CodeResult.WRONG)
        challenge.verified_at = now
        # The request the challenge names, and the others one form made for the same address (one code for all).
        confirmed = session.scalars(
            select(PrivacyRequest)
            .where(
                PrivacyRequest.tenant_id == tenant.id,
                or_(
                    PrivacyRequest.id == challenge.request_id,
                    PrivacyRequest.shared_address_group == challenge.id,
                ),
            )
            .order_by(PrivacyRequest.id)
            .with_for_update()
        ).all()
        for request in confirmed:
            if request.state == RequestState.RECEIVED:
                requests.verify_identity(session, None, request, Verification.EMAIL_CODE)
        named = next(r for r in confirmed if r.id == challenge.request_id)
        return CodeCheck(CodeResult.VERIFIED, CODE_TRIES - challenge.attempts, requests.summary(named, now))


def _refused(session: TenantSession, challenge: RequestChallenge, result: CodeResult) -> CodeCheck:
    tries_left = max(0, CODE_TRIES - challenge.attempts)
    target = (requests.TARGET, challenge.request_id) if challenge.request_id is not None else None
    details = {"method": Verification.EMAIL_CODE.value, "reason": result.value, "challenge_id": challenge.id}
    audit.record(session, Action.PRIVACY_REQUEST_VERIFIED, target, outcome=Outcome.FAILED, details=details)
    return CodeCheck(result, tries_left)


def _submit_in(
    db: Database,
    tenant: Tenant,
    kind: RequestKind,
    by: LookupField,
    value: str,
    scope: str | None,
    changes: dict[str, Any] | None,
    inquiry_id: UUID | None,
    notice_version: str | None = None,
) -> FormAnswer:
    started = time.monotonic()
    with tenant_session(db, tenant.id) as session:
        # Before anything is looked up: a stale form is refused alike whoever it names.
        notice = notices.checked(session, notice_version)
        shown = notices.shown(session, notice)
        label = notice.version if notice is not None else None
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        challenge = RequestChallenge(tenant_id=tenant.id, id=uuid4(), attempts=0)
        challenge.code_hash = _code_hash(session, challenge.id, code)
        challenge.expires_at = db_now(session) + CODE_VALID
        found = _match(session, by, value)
        if not found.patrons:
            session.add(challenge)
            session.flush()
            details = {"channel": RequestChannel.FORM.value, "by": by.value, "reason": found.unmatched}
            details |= {"challenge_id": challenge.id, "inquiry_id": inquiry_id, "notice_version": label}
            audit.record(session, Action.PRIVACY_REQUEST_RECEIVED, outcome=Outcome.FAILED, details=details)
        else:
            # One request per patron the address is on file for; one code confirms them all.
            group = challenge.id if len(found.patrons) > 1 else None
            made = [
                requests.receive(
                    session,
                    None,
                    RequestChannel.FORM,
                    patron.id,
                    kind,
                    objection_scope=scope,
                    corrections=changes,
                    inquiry_id=inquiry_id,
                    shared_address_group=group,
                )
                for patron in found.patrons
            ]
            for made_request in made:
                notices.record_receipt(
                    session, notice, Collection.REQUEST_FORM, made_request.patron_id, made_request.id
                )
            request = made[0]
            challenge.request_id = request.id
            session.add(challenge)
            session.flush()
            # The same mail whether the address is on file once or several times: it tells the mailbox no more.
            mailed = queue_mail(
                session,
                to=found.address,
                subject=f"[{tenant.name}] your code to confirm a privacy request",
                template="privacy_request_code.txt",
                context={
                    "institution": tenant.name,
                    "code": code,
                    "kind": kind.value,
                    "minutes": int(CODE_VALID.total_seconds() // 60),
                    "tries": CODE_TRIES,
                },
                category=MailCategory.SERVICE,
            )
            details = {
                "challenge_id": challenge.id,
                "message_id": mailed.id,
                "expires_at": challenge.expires_at.isoformat(),
                "notice_version": label,
            }
            if group is not None:
                details |= {"shared_address_group": group, "request_ids": [r.id for r in made]}
                details["patrons_beyond_limit"] = found.beyond_limit
            audit.record(session, Action.PRIVACY_REQUEST_CODE_SENT, (requests.TARGET, request.id), details=details)
    _answer_no_sooner(started)  # committed: both paths have done all they do before the answer
    return FormAnswer(
        status=FormStatus.CODE_SENT,
        institution=tenant.slug,
        verification_id=challenge.id,
        privacy_notice=shown,
        detail=(
            f"If {tenant.name} has one patron matching what you gave, with an email address on file, a "
            f"{CODE_DIGITS}-digit code is on its way to that address (not to any address typed here). Send it "
            f"with this verification_id to POST /api/v1/privacy/requests/form/verify within "
            f"{int(CODE_VALID.total_seconds() // 60)} minutes; {CODE_TRIES} tries."
        ),
    )


def _answer_no_sooner(started: float) -> None:
    """Hold the answer until ANSWER_FLOOR has passed since `started`; say so when the work took longer
    (under heavy load the floor no longer hides the difference, and operators should raise it)."""
    left = ANSWER_FLOOR - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)
    else:
        log.warning("privacy.form_answer_floor_exceeded", floor_seconds=ANSWER_FLOOR, over_seconds=round(-left, 3))


@dataclass(frozen=True)
class Match:
    """The patrons the identifier names whose address on file counts, that address, or why nobody matched."""

    patrons: list[Patron]
    address: str | None
    unmatched: str = ""  # for the trail only
    beyond_limit: bool = False


def _match(session: TenantSession, by: LookupField, value: str) -> Match:
    """Who the form names, and the one address the code goes to.

    Only an address that counts identifies anyone (library.email_counts): one the institution's staff entered,
    or one its owner confirmed. A self-registration's address nobody has confirmed is not matched at all, so
    typing someone's address into self-registration neither reaches their mail nor stands in their way.
    Several patrons may share an address that counts (a household, a record entered twice): the code still
    goes to it, since whoever holds the mailbox is who asks, and `_submit_in` makes one request per patron
    for the officer to settle. The institutional id and the barcode are unique, so they name one patron at most.
    """
    index = blind_index(session.keyring.index_key(session.tenant_id), by.value, value)
    column = getattr(Patron, f"{by.value}_index")
    query = select(Patron).where(Patron.tenant_id == session.tenant_id, column == index)
    if by is LookupField.EMAIL:
        query = query.where(Patron.email_unconfirmed_until.is_(None))
    found = session.scalars(query.order_by(Patron.created_at, Patron.id).limit(MATCH_LIMIT + 1)).all()
    if not found:
        unconfirmed = by is LookupField.EMAIL and session.scalar(
            select(Patron.id).where(Patron.tenant_id == session.tenant_id, column == index).limit(1)
        )
        return Match([], None, "only unconfirmed self-registrations match" if unconfirmed else "no patron matches")
    patrons, address, why = [], None, ""
    for patron in found[:MATCH_LIMIT]:
        on_file = library.email_on_file(session, patron)
        if not on_file or not ADDRESS.fullmatch(on_file):
            why = why or _no_address(session, patron)
            continue
        patrons.append(patron)
        address = address or on_file  # the same address on each (the index matched); the earliest record's spelling
    if not patrons:
        return Match([], None, why)
    return Match(patrons, address, beyond_limit=len(found) > MATCH_LIMIT)


def _no_address(session: TenantSession, patron: Patron) -> str:
    if patron.email is not None and not library.email_counts(patron):
        return "the address on file is a self-registration's, not yet confirmed"
    try:
        session.keyring.subject_key(session.tenant_id, patron.id)
    except KeyDestroyed:
        return "the patron was erased"
    return "no usable email address on file"


def _code_hash(session: TenantSession, challenge_id: UUID, code: str) -> bytes:
    # Keyed, and bound to the challenge: a million possible codes are no secret to an unkeyed hash.
    return blind_index(session.keyring.index_key(session.tenant_id), "privacy-request-code", f"{challenge_id}:{code}")


# -- inquiries to the platform ---------------------------------------------------------------


def _inquiry(db: Database, kind: RequestKind, by: LookupField, value: str, scope: str | None) -> FormAnswer:
    if by is not LookupField.EMAIL or not ADDRESS.fullmatch(value.strip()):
        # A valid form the platform cannot take as it is (409, not 422): it needs an address to hold.
        raise Conflict(
            "institution: name the institution that holds your data; without one, identify yourself with "
            'by "email" and your email address, and we will ask you which institution'
        )
    reference = secrets.token_urlsafe(24)
    with platform_session(db) as session:
        inquiry = PrivacyInquiry(
            id=uuid4(),
            reference_hash=_reference_hash(reference),
            kind=kind.value,
            objection_scope=scope,
            status=InquiryStatus.PENDING.value,
            expires_at=db_now(session) + INQUIRY_KEPT,
        )
        db.keyring.create_tenant(PLATFORM)  # the platform's own keyring slot; idempotent
        key = db.keyring.create_subject(PLATFORM, inquiry.id)
        inquiry.contact_address = encrypt_field(key, PLATFORM, INQUIRY_TABLE, "contact_address", inquiry.id, value)
        session.add(inquiry)
        session.flush()
        details = {"kind": kind.value, "expires_at": inquiry.expires_at.isoformat()}
        audit.record(session, Action.PRIVACY_INQUIRY_RECEIVED, (INQUIRY_TARGET, inquiry.id), details=details)
    return FormAnswer(
        status=FormStatus.INSTITUTION_NEEDED,
        inquiry_reference=reference,
        detail=(
            "Bookwarden hosts data for many institutions, and each decides on requests about the data it "
            "holds. Which institution is it? Send its identifier with this inquiry_reference to POST "
            "/api/v1/privacy/inquiries/forward within 30 days; your request is then forwarded to it."
        ),
    )


def forward(
    db: Database,
    *,
    reference: str,
    institution: str,
    source_address: str,
    corrections: dict[str, Any] | None = None,
) -> FormAnswer:
    """Forward a pending inquiry into the named institution's queue; the same answer as the form's."""
    _admit(db, source_address)
    with platform_session(db) as session:
        inquiry = session.scalar(
            select(PrivacyInquiry).where(PrivacyInquiry.reference_hash == _reference_hash(reference))
        )
        if inquiry is None or inquiry.status != InquiryStatus.PENDING or inquiry.expires_at <= db_now(session):
            raise NotFound(
                "no pending inquiry with this reference (unknown, forwarded already, or lapsed after 30 days)"
            )
        key = db.keyring.subject_key(PLATFORM, inquiry.id)
        contact = decrypt_field(key, PLATFORM, INQUIRY_TABLE, "contact_address", inquiry.id, inquiry.contact_address)
        inquiry_id, kind, scope = inquiry.id, RequestKind(inquiry.kind), inquiry.objection_scope
    if (kind is RequestKind.RECTIFICATION) != (corrections is not None):
        raise Conflict(
            "corrections: the inquiry is a rectification, name the fields to correct"
            if kind is RequestKind.RECTIFICATION
            else f"corrections: the inquiry is a {kind.value} request, which corrects nothing"
        )
    scope, changes = requests.checked_details(kind, scope, corrections)
    tenant = _institution(db, institution)
    answer = _submit_in(db, tenant, kind, LookupField.EMAIL, contact, scope, changes, inquiry_id)
    with platform_session(db) as session:
        session.execute(
            update(PrivacyInquiry)
            .where(PrivacyInquiry.id == inquiry_id, PrivacyInquiry.status == InquiryStatus.PENDING.value)
            .values(
                status=InquiryStatus.FORWARDED.value,
                forwarded_to=tenant.id,
                forwarded_at=db_now(session),
                contact_address=None,
            )
        )
        details = {"institution": tenant.id, "verification_id": answer.verification_id}
        audit.record(session, Action.PRIVACY_INQUIRY_FORWARDED, (INQUIRY_TARGET, inquiry_id), details=details)
    db.keyring.shred_subject(PLATFORM, inquiry_id)  # the platform keeps no way to read the address
    return answer


def lapse_inquiries(db: Database, batch: int = 500) -> int:
    """Inquiries never forwarded within 30 days lapse: their contact address is shredded."""
    with platform_session(db) as session:
        lapsed = session.scalars(
            select(PrivacyInquiry)
            .where(
                PrivacyInquiry.status == InquiryStatus.PENDING.value,
                PrivacyInquiry.expires_at <= db_now(session),
            )
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for inquiry in lapsed:
            inquiry.status, inquiry.contact_address = InquiryStatus.LAPSED.value, None
            audit.record(session, Action.PRIVACY_INQUIRY_LAPSED, (INQUIRY_TARGET, inquiry.id))
        ids = [inquiry.id for inquiry in lapsed]
    for inquiry_id in ids:
        db.keyring.shred_subject(PLATFORM, inquiry_id)
    return len(ids)


# -- helpers ---------------------------------------------------------------------------------


def _institution(db: Database, slug: str) -> Tenant:
    with platform_session(db) as session:
        tenant = signin.institution(session, slug)
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        raise NotFound("institution: no institution with this identifier takes requests here; check its spelling")
    return tenant


def _admit(db: Database, source_address: str) -> None:
    try:
        with platform_session(db) as session:
            throttle.admit_address(session, _form_key(db.master, source_address))
    except throttle.TooManyAttempts:
        details = {"channel": RequestChannel.FORM.value, "reason": "too many requests from this address"}
        audit.record_now(db, Action.PRIVACY_REQUEST_RECEIVED, outcome=Outcome.DENIED, details=details)
        raise


def _form_key(master: MasterKeys, source_address: str) -> bytes:
    # A count of its own in the address throttle, like password-reset requests: sending forms must not
    # slow the sender's sign-ins, nor failed sign-ins stop them asking.
    return derive(throttle.address_key(master, source_address), KeyPurpose.PRIVACY_REQUEST_FORM)


def _reference_hash(reference: str) -> bytes:
    # The reference is 192 random bits: a plain SHA-256 is enough to keep it out of the table.
    return hashlib.sha256(reference.encode()).digest()
