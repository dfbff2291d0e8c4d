"""Disclosures: every sharing of personal data with a third party goes through `disclose`.

One function, so that no sharing can skip its three duties:

1. Objections, through the sharing gate (privacy/consent/gate.py `check_sharing`). Direct marketing
   is refused as a purpose. A subject who objects to disclosure to third parties, or to the
   disclosure's purpose (`purpose:<purpose>`), or whose processing is restricted (art. 18: the data
   is only kept), is left out, unless the basis is a legal obligation (OBJECTIONS_CANNOT_STOP):
   an objection (GDPR art. 21) weighs against the controller's own interests or task; it cannot
   override a law that obliges the institution to disclose (art. 6(1)(c), which art. 21 does not
   reach). The subjects left out are returned, and the caller shares only `patron_ids` of the result;
   when every subject objected (a disclosure about one patron who objected, above all), nothing may be
   shared and the whole disclosure is refused (409 objected).
2. The record. Recipient, kind, purpose, basis, categories, the number of subjects (and which:
   disclosure_subjects, so a subject's access package lists the disclosures about them), who disclosed
   and when; an audit event with the counts and a SHA-256 of the subject ids.
3. Notice. When the institution's policy says so for the kind of disclosure (DisclosureNoticePolicy;
   NOTICE_DEFAULTS for a kind it never set), each subject with an address is mailed a service notice.
   For a legal request the notice may be withheld where the law forbids telling (a reason is
   required, recorded and audited); the statement promises notice "to the extent it is practicable
   to do so and allowed by law".

The bulk patron export (library/export.py) is not recorded here (it is a file of every patron, under
maker-checker, with its own record), but it asks the same gate and leaves out the same patrons.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Uuid, any_, bindparam, func, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.classification import Category
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.core.purposes import SharingPath, checked_purpose
from bookwarden.core.text import is_line, is_lines
from bookwarden.crypto.fields import decrypt_field
from bookwarden.db.session import TenantSession
from bookwarden.library import records as library
from bookwarden.library.models import Patron
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import queue_mail
from bookwarden.privacy.consent.gate import check_sharing
from bookwarden.privacy.disclosures.models import (
    Disclosure,
    DisclosureKind,
    DisclosureNoticePolicy,
    DisclosureSubject,
    LegalBasis,
)
from bookwarden.privacy.registry import POLICIES
from bookwarden.tenancy.models import Tenant

TARGET = "disclosure"
MAX_SUBJECTS = 10_000
LIST_LIMIT = 500
UUIDS = ARRAY(Uuid)
# The one rule objections cannot pass: a legal obligation to disclose (GDPR art. 6(1)(c)).
OBJECTIONS_CANNOT_STOP = frozenset({LegalBasis.LEGAL_OBLIGATION})
# Whether subjects are told when the institution has set nothing for a kind. A legal request is
# told (the statement's promise); the institution's own analysis and its processors act for it,
# under its privacy notice, so telling each subject each time is the institution's choice.
NOTICE_DEFAULTS: dict[DisclosureKind, bool] = {
    DisclosureKind.USAGE_ANALYSIS: False,
    DisclosureKind.SERVICE_PROVIDER: False,
    DisclosureKind.LEGAL_REQUEST: True,
    DisclosureKind.OTHER: True,
}


class Objected(Conflict):
    """Every patron a disclosure names objected (or is restricted): the whole disclosure is refused."""

    slug = "objected"


@dataclass(frozen=True)
class DisclosureResult:
    disclosure: Disclosure
    patron_ids: list[UUID]  # the subjects whose data may be shared: share these and no others
    refused_patron_ids: list[UUID]  # left out: they objected, or their processing is restricted


@dataclass(frozen=True)
class NoticePolicy:
    kind: DisclosureKind
    notify: bool
    default: bool  # True: the institution never set it


def disclose(
    session: TenantSession,
    *,
    recipient: str,
    purpose: str,
    basis: LegalBasis | str,
    categories: list[Category | str],
    patron_ids: list[UUID],
    kind: DisclosureKind | str = DisclosureKind.OTHER,
    reference: str | None = None,
    notice_withheld_reason: str | None = None,
    actor: Principal | None = None,
) -> DisclosureResult:
    """Record a disclosure of `categories` of `patron_ids` to `recipient`, leaving out objectors.

    `actor`, when given, must hold privacy.disclosures.manage; platform duties pass None and act as
    the audit context's principal (or the system)."""
    if actor is not None:
        authorize(actor, Permission.PRIVACY_DISCLOSURES_MANAGE)
    basis, kind = _checked(LegalBasis, basis, "basis"), _checked(DisclosureKind, kind, "kind")
    recipient = _text(recipient, "recipient", 200)
    purpose = checked_purpose(purpose)  # a name, and never direct marketing
    names = sorted({_checked(Category, c, "categories").value for c in categories})
    if not names:
        raise InvalidInput("categories: name at least one category of data shared")
    subjects = list(dict.fromkeys(patron_ids))
    if not subjects or len(subjects) > MAX_SUBJECTS:
        raise InvalidInput(f"patron_ids: 1-{MAX_SUBJECTS} patrons per disclosure")
    if notice_withheld_reason is not None:
        notice_withheld_reason = _text(notice_withheld_reason, "notice_withheld_reason", 500, multiline=True)
        if kind is not DisclosureKind.LEGAL_REQUEST:
            # A well-formed request that a standing rule forbids: 409, so the API schema stays exact.
            raise Conflict("notice_withheld_reason: only a legal request may keep the subjects from being told")
    _require_patrons(session, subjects)

    decision = check_sharing(
        session,
        SharingPath.DISCLOSURE,
        purpose,
        subjects,
        legal_obligation=basis in OBJECTIONS_CANNOT_STOP,
        actor=actor,
    )
    refused, allowed = set(decision.excluded), decision.allowed
    if not allowed:
        raise Objected(
            f"every one of the {len(subjects)} patrons named objected to this disclosure (to third parties or "
            f"to the purpose {purpose}) or has their processing restricted; nothing may be shared on the basis "
            f"{basis.value} (only a legal obligation passes an objection)"
        )

    principal = actor or audit.current().principal or SYSTEM
    notify = notice_withheld_reason is None and notice_policy(session, kind).notify
    # The row is written once, complete: the notices are queued first, so their count is known.
    disclosure = Disclosure(
        tenant_id=session.tenant_id,
        id=uuid.uuid4(),
        recipient=recipient,
        kind=kind.value,
        purpose=purpose,
        basis=basis.value,
        categories=names,
        reference=_text(reference, "reference", 200) if reference is not None else None,
        subject_count=len(allowed),
        refused_count=len(refused),
        notice_withheld_reason=notice_withheld_reason,
        disclosed_by=principal.id,
        disclosed_at=session.scalar(select(func.now())),
    )
    notices = _notify(session, disclosure, allowed) if notify else {}
    disclosure.notices_queued = len(notices)
    session.add(disclosure)
    session.flush()
    # One statement for any number of subjects: two arrays unnested side by side.
    session.execute(
        text(
            "INSERT INTO disclosure_subjects (tenant_id, disclosure_id, patron_id, notice_message_id) "
            "SELECT :tenant, :disclosure, patron, notice FROM unnest(:patrons, :notices) AS s(patron, notice)"
        ).bindparams(bindparam("patrons", type_=UUIDS), bindparam("notices", type_=UUIDS)),
        {
            "tenant": session.tenant_id,
            "disclosure": disclosure.id,
            "patrons": allowed,
            "notices": [notices.get(p) for p in allowed],
        },
    )
    audit.record(
        session,
        Action.DISCLOSED,
        (TARGET, disclosure.id),
        actor=actor,
        details={
            "recipient": recipient,
            "kind": kind.value,
            "purpose": purpose,
            "basis": basis.value,
            "categories": names,
            "subject_count": len(allowed),
            "refused_count": len(refused),
            "subjects_sha256": _digest(allowed),
            "notices_queued": len(notices),
            "notice_withheld": notice_withheld_reason is not None,
        },
    )
    return DisclosureResult(disclosure, allowed, sorted(refused, key=str))


def _notify(session: TenantSession, disclosure: Disclosure, patron_ids: list[UUID]) -> dict[UUID, UUID]:
    """A notice to each subject with an address on file: {patron id: outbox message id}."""
    institution = session.get(Tenant, session.tenant_id).name
    context = {
        "institution": institution,
        "recipient": disclosure.recipient,
        "purpose": disclosure.purpose,
        "basis": disclosure.basis,
        "categories": "; ".join(POLICIES[Category(c)].description for c in disclosure.categories),
        "disclosed": disclosure.disclosed_at.isoformat(timespec="minutes"),
        "reference": disclosure.reference or str(disclosure.id),
    }
    queued: dict[UUID, UUID] = {}
    patrons = session.scalars(
        select(Patron).where(Patron.tenant_id == session.tenant_id, Patron.id == any_(_ids(patron_ids)))
    ).all()
    counted = [p for p in patrons if library.email_counts(p)]  # never a self-registration's unconfirmed address
    keys = session.keyring.subject_keys(session.tenant_id, [p.id for p in counted])
    for patron in counted:
        key = keys.get(patron.id)
        address = key and decrypt_field(key, session.tenant_id, "patrons", "email", patron.id, patron.email)
        if not address:
            continue  # no address on file, or erased: nobody to tell (the disclosure says how many were told)
        message = queue_mail(
            session,
            to=address,
            # The recipient is named in the body: a subject line is one short line of header.
            subject=f"[{institution}] your personal data was shared with a third party",
            template="disclosure_notice.txt",
            context=context,
            category=MailCategory.SERVICE,
        )
        queued[patron.id] = message.id
    return queued


# -- reading --------------------------------------------------------------------------------------


def list_disclosures(
    session: TenantSession,
    actor: Principal | None,
    *,
    patron_id: UUID | None = None,
    limit: int = LIST_LIMIT,
) -> list[Disclosure]:
    """The institution's disclosures, newest first; with `patron_id`, those about that patron."""
    if actor is not None:
        authorize(actor, Permission.PRIVACY_DISCLOSURES_MANAGE)
    found = _about(session, patron_id, limit)
    audit.record(
        session,
        Action.DISCLOSURE_LISTED,
        ("patron", patron_id) if patron_id is not None else None,
        actor=actor,
        details={"count": len(found), "ids": [d.id for d in found]},
    )
    return found


def own_disclosures(session: TenantSession, actor: Principal, patron_id: UUID) -> list[Disclosure]:
    """The disclosures about the signed-in patron (the caller resolved `patron_id` from the account)."""
    found = _about(session, patron_id, LIST_LIMIT)
    details = {"count": len(found), "ids": [d.id for d in found]}
    audit.record(session, Action.DISCLOSURE_LISTED, ("patron", patron_id), actor=actor, details=details)
    return found


def disclosures_about(session: TenantSession, patron_id: UUID) -> list[Disclosure]:
    """Every disclosure naming the patron, oldest first, unaudited: for the subject-access package,
    which records its own event."""
    return list(reversed(_about(session, patron_id, None)))


def read(session: TenantSession, actor: Principal, disclosure_id: UUID) -> tuple[Disclosure, list[UUID]]:
    """One disclosure and the patrons it named (still on record: an erased patron leaves only the count)."""
    authorize(actor, Permission.PRIVACY_DISCLOSURES_MANAGE)
    disclosure = session.get(Disclosure, (session.tenant_id, disclosure_id))
    if disclosure is None:
        raise NotFound(f"no disclosure {disclosure_id}")
    subjects = list(
        session.scalars(
            select(DisclosureSubject.patron_id)
            .where(DisclosureSubject.tenant_id == session.tenant_id, DisclosureSubject.disclosure_id == disclosure_id)
            .order_by(DisclosureSubject.patron_id)
        )
    )
    audit.record(session, Action.DISCLOSURE_VIEWED, (TARGET, disclosure_id), actor=actor)
    return disclosure, subjects


def _about(session: TenantSession, patron_id: UUID | None, limit: int | None) -> list[Disclosure]:
    query = select(Disclosure).where(Disclosure.tenant_id == session.tenant_id)
    if patron_id is not None:
        named = select(DisclosureSubject.disclosure_id).where(
            DisclosureSubject.tenant_id == session.tenant_id, DisclosureSubject.patron_id == patron_id
        )
        query = query.where(Disclosure.id.in_(named))
    query = query.order_by(Disclosure.disclosed_at.desc(), Disclosure.id)
    return list(session.scalars(query.limit(limit) if limit is not None else query))


def summary(disclosure: Disclosure) -> dict:
    """A disclosure as plain values, without the subjects (for the command line and reports)."""
    return {
        "id": str(disclosure.id),
        "recipient": disclosure.recipient,
        "kind": disclosure.kind,
        "purpose": disclosure.purpose,
        "basis": disclosure.basis,
        "categories": list(disclosure.categories),
        "reference": disclosure.reference,
        "subject_count": disclosure.subject_count,
        "refused_count": disclosure.refused_count,
        "notices_queued": disclosure.notices_queued,
        "notice_withheld": disclosure.notice_withheld_reason is not None,
        "disclosed_at": disclosure.disclosed_at.isoformat(),
    }


# -- the notice policy --------------------------------------------------------------------------------


def notice_policy(session: TenantSession, kind: DisclosureKind) -> NoticePolicy:
    row = session.get(DisclosureNoticePolicy, (session.tenant_id, kind.value))
    if row is None:
        return NoticePolicy(kind, NOTICE_DEFAULTS[kind], True)
    return NoticePolicy(kind, row.notify, False)


def notice_policies(session: TenantSession, actor: Principal) -> list[NoticePolicy]:
    authorize(actor, Permission.PRIVACY_DISCLOSURES_MANAGE)
    found = [notice_policy(session, kind) for kind in DisclosureKind]
    audit.record(session, Action.DISCLOSURE_POLICY_VIEWED, actor=actor)
    return found


def set_notice_policy(session: TenantSession, actor: Principal, kind: DisclosureKind, notify: bool) -> NoticePolicy:
    authorize(actor, Permission.PRIVACY_DISCLOSURES_MANAGE)
    kind = _checked(DisclosureKind, kind, "kind")
    before = notice_policy(session, kind)
    statement = insert(DisclosureNoticePolicy).values(
        tenant_id=session.tenant_id, kind=kind.value, notify=notify, changed_by=actor.id
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "kind"],
            set_={"notify": notify, "changed_by": actor.id, "changed_at": func.now()},
        )
    )
    session.expire_all()
    audit.record(
        session,
        Action.DISCLOSURE_POLICY_CHANGED,
        actor=actor,
        details={"kind": kind.value, "notify": notify, "was": before.notify},
    )
    return NoticePolicy(kind, notify, False)


# -- helpers --------------------------------------------------------------------------------------


def _checked(enum_type, value, field: str):
    try:
        return enum_type(value)
    except ValueError:
        known = ", ".join(m.value for m in enum_type)
        raise InvalidInput(f"{field}: one of {known}") from None


def _text(value: str, field: str, limit: int, *, multiline: bool = False) -> str:
    # The API's rule exactly (core/text.py): something visible, no control characters (a line), or none
    # but tab and line breaks (lines).
    if not (is_lines if multiline else is_line)(value, limit):
        kind = "text (tabs and line breaks allowed)" if multiline else "text on one line"
        raise InvalidInput(f"{field}: 1-{limit} characters of {kind}, no control characters")
    return value


def _require_patrons(session: TenantSession, patron_ids: list[UUID]) -> None:
    found = set(
        session.scalars(
            select(Patron.id).where(Patron.tenant_id == session.tenant_id, Patron.id == any_(_ids(patron_ids)))
        )
    )
    missing = [p for p in patron_ids if p not in found]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise NotFound(f"no patron {shown}{' and others' if len(missing) > 5 else ''} ({len(missing)} unknown)")


def _ids(ids: list[UUID]):
    """A list of ids as one uuid[] parameter (= ANY): one bind whatever the count, not one per id."""
    return literal(list(ids), type_=UUIDS)


def _digest(patron_ids: list[UUID]) -> str:
    return hashlib.sha256("\n".join(sorted(str(p) for p in patron_ids)).encode()).hexdigest()


__all__ = [
    "OBJECTIONS_CANNOT_STOP",
    "DisclosureKind",
    "DisclosureResult",
    "LegalBasis",
    "disclose",
    "disclosures_about",
    "list_disclosures",
]
