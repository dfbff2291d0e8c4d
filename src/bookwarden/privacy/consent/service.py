"""Communication preferences and consent records: what a patron agreed to, when, how, under which notice.

A preference is a consent to one topic on one channel, kept as the purpose
`communication:<channel>:<topic>` in the append-only consent history (consent_models.py). The
current state of a purpose is its latest record; a purpose with no record is NOT agreed to: optional
mail goes only to people who said yes (opt-in), and saying no again changes nothing.

Service messages (due-date notices, security notices, mail about a privacy request) are another
class: they are sent whatever the preferences, because the service cannot work without them, so
they have no preference to change and every attempt to turn one off is refused with the reason.

Cookie choices of the portal follow the same rule: strictly necessary cookies are always on and
need no choice; analytics and preference cookies are off until the visitor turns them on.

Every change and every read of someone's choices writes its audit event in the same transaction.

A withdrawal is the proof that mail stopped when it should have: it and the records before it of the same
purpose are kept 3 years after the withdrawal, then removed (`forget_withdrawn`, daily:
privacy/consent/jobs.py). The history is append-only for the application, so the removal goes through one
narrow database function that holds the period itself (migration 0024); a purpose with no record left is
not agreed to, which is what the withdrawal said.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import select, text

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.library.models import Patron
from bookwarden.privacy.consent.models import ConsentMethod, ConsentRecord, CookieChoice
from bookwarden.privacy.notices import service as notices

TARGET = "patron"
RETENTION_JOB = "privacy.consent_retention"
# The registry's "consent records 3 years after withdrawal" (privacy/registry.py PREFERENCES; privacy/periods.py
# checks); bookwarden_forget_withdrawn_consent (migration 0024) holds the same 1095 days.
KEEP_AFTER_WITHDRAWAL = timedelta(days=1095)
HISTORY_LIMIT = 1000
COMMUNICATION = "communication"


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    POST = "post"


class Topic(enum.StrEnum):
    # Optional: each needs the patron's yes, and each optional mail offers a one-click way out.
    NEWSLETTERS = "newsletters"
    EVENTS = "events"
    RECOMMENDATIONS = "recommendations"
    SURVEYS = "surveys"
    # Service messages: sent whatever the preferences (SERVICE_REASONS says why).
    DUE_DATE_NOTICES = "due_date_notices"
    SECURITY = "security"
    PRIVACY_REQUESTS = "privacy_requests"

    @property
    def optional(self) -> bool:
        return self not in SERVICE_REASONS


SERVICE_REASONS: dict[Topic, str] = {
    Topic.DUE_DATE_NOTICES: "due-date and overdue notices are part of lending: the loan cannot work without them",
    Topic.SECURITY: "security notices (sign-ins, changes to your account) protect your account and your data",
    Topic.PRIVACY_REQUESTS: "mail about a privacy request or complaint you made answers you: it is the request itself",
}
OPTIONAL_TOPICS = tuple(t for t in Topic if t.optional)
LABELS: dict[Topic, str] = {
    Topic.NEWSLETTERS: "newsletters",
    Topic.EVENTS: "news of events",
    Topic.RECOMMENDATIONS: "reading recommendations",
    Topic.SURVEYS: "surveys",
}
# How staff may record a choice for a patron: in person or by phone, or from a form the patron signed.
STAFF_METHODS = (ConsentMethod.STAFF, ConsentMethod.FORM)


def purpose(channel: Channel, topic: Topic) -> str:
    return f"{COMMUNICATION}:{Channel(channel).value}:{Topic(topic).value}"


@dataclass(frozen=True)
class Preference:
    channel: Channel
    topic: Topic
    optional: bool
    subscribed: bool
    since: datetime | None  # when the current state was recorded; None: never chosen (optional: off)
    method: ConsentMethod | None
    notice_version: str | None
    why_always_on: str | None  # service messages: why they cannot be turned off


@dataclass(frozen=True)
class Choice:
    channel: Channel
    topic: Topic
    subscribed: bool


@dataclass(frozen=True)
class CookieState:
    """The cookies the portal may set for a visitor. Strictly necessary ones are always on."""

    strictly_necessary: bool
    analytics: bool
    preferences: bool
    chosen: bool  # False: no choice yet, so strictly necessary only
    notice_version: str | None
    recorded_at: datetime | None


NO_COOKIE_CHOICE = CookieState(True, False, False, False, None, None)


# -- who is acting for whom ---------------------------------------------------------------------


def staff_patron_id(session: TenantSession, actor: Principal, patron_id: UUID) -> UUID:
    """Staff acting on a patron's behalf: the permission, and a patron of this institution."""
    authorize(actor, Permission.PRIVACY_PREFERENCES_MANAGE)
    require_patron(session, patron_id)
    return patron_id


def require_patron(session: TenantSession, patron_id: UUID) -> None:
    if session.get(Patron, (session.tenant_id, patron_id)) is None:
        raise NotFound(f"no patron {patron_id}")


# -- preferences -------------------------------------------------------------------------------


def preferences(session: TenantSession, actor: Principal, patron_id: UUID) -> list[Preference]:
    """Every channel and topic with its current state (the caller checked who may read whose)."""
    latest = _latest(session, patron_id, prefix=f"{COMMUNICATION}:")
    found = []
    for channel in Channel:
        for topic in Topic:
            if not topic.optional:
                found.append(Preference(channel, topic, False, True, None, None, None, SERVICE_REASONS[topic]))
                continue
            row = latest.get(purpose(channel, topic))
            found.append(
                Preference(
                    channel,
                    topic,
                    True,
                    bool(row and row.given),
                    row.recorded_at if row else None,
                    ConsentMethod(row.method) if row else None,
                    row.notice_version if row else None,
                    None,
                )
            )
    audit.record(session, Action.PREFERENCES_VIEWED, (TARGET, patron_id), actor=actor)
    return found


def is_subscribed(session: TenantSession, patron_id: UUID, channel: Channel, topic: Topic) -> bool:
    """Whether an optional message on `topic` may go to the patron by `channel` now. Always True for a
    service topic; for an optional one, only when the latest record of it is a consent given."""
    topic = Topic(topic)
    if not topic.optional:
        return True
    row = _latest(session, patron_id, exact=purpose(channel, topic)).get(purpose(channel, topic))
    return bool(row and row.given)


def set_preferences(
    session: TenantSession,
    actor: Principal,
    patron_id: UUID,
    choices: Iterable[Choice],
    *,
    method: ConsentMethod,
    notice_version: str | None,
    request_id: UUID | None = None,
) -> list[ConsentRecord]:
    """Record the patron's choices; a choice equal to the current state records nothing (idempotent).

    The caller has checked who acts for whom (own_patron_id / staff_patron_id) and chosen the method.
    """
    choices = list(choices)
    refused = sorted({c.topic.value for c in choices if not Topic(c.topic).optional})
    if refused:
        reasons = "; ".join(f"{t}: {SERVICE_REASONS[Topic(t)]}" for t in refused)
        raise Conflict(f"service messages cannot be turned off ({reasons})")
    wanted: dict[str, bool] = {}
    for choice in choices:
        name = purpose(choice.channel, choice.topic)
        if name in wanted and wanted[name] != choice.subscribed:
            raise Conflict(f"choices: {choice.channel.value} {choice.topic.value} is both on and off")
        wanted[name] = choice.subscribed
    # The version in force is what is recorded; naming another is refused (StaleNotice), nothing recorded.
    notice_version = notices.label_to_record(session, notice_version)
    if any(wanted.values()) and not notice_version:
        raise InvalidInput("notice_version: say which version of the privacy notice the patron was shown")
    latest = _latest(session, patron_id, prefix=f"{COMMUNICATION}:")
    written = [
        _append(session, actor, patron_id, name, given, method, notice_version, request_id)
        for name, given in sorted(wanted.items())
        if bool(latest.get(name) and latest[name].given) != given
    ]
    session.flush()
    audit.record(
        session,
        Action.PREFERENCES_CHANGED,
        (TARGET, patron_id),
        actor=actor,
        details={
            "method": method.value,
            "notice_version": notice_version,
            "given": [r.purpose for r in written if r.given],
            "withdrawn": [r.purpose for r in written if not r.given],
            "unchanged": len(wanted) - len(written),
        },
    )
    return written


def withdraw(
    session: TenantSession, patron_id: UUID, channel: Channel, topic: Topic, method: ConsentMethod
) -> ConsentRecord | None:
    """Turn one optional topic off (an unsubscribe link): the record written, None if it was off already.
    No audit event here: the caller records what the withdrawal was (privacy.unsubscribed)."""
    name = purpose(channel, topic)
    current = _latest(session, patron_id, exact=name).get(name)
    if not (current and current.given):
        return None
    record = _append(session, None, patron_id, name, False, method, None, None)
    session.flush()
    return record


def history(session: TenantSession, actor: Principal, patron_id: UUID) -> list[ConsentRecord]:
    """The patron's whole consent history, oldest first (the caller checked who may read it)."""
    rows = list(
        session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.tenant_id == session.tenant_id, ConsentRecord.patron_id == patron_id)
            .order_by(ConsentRecord.seq)
            .limit(HISTORY_LIMIT)
        )
    )
    audit.record(session, Action.CONSENTS_VIEWED, (TARGET, patron_id), actor=actor, details={"count": len(rows)})
    return rows


def consent_history(session: TenantSession, patron_id: UUID) -> list[ConsentRecord]:
    """Every consent record of a patron, oldest first, unaudited: for a caller that records its own
    event (the subject-access package, which lists consents among everything else)."""
    return list(
        session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.tenant_id == session.tenant_id, ConsentRecord.patron_id == patron_id)
            .order_by(ConsentRecord.seq)
        )
    )


def _latest(
    session: TenantSession, patron_id: UUID, *, prefix: str | None = None, exact: str | None = None
) -> dict[str, ConsentRecord]:
    query = (
        select(ConsentRecord)
        .where(ConsentRecord.tenant_id == session.tenant_id, ConsentRecord.patron_id == patron_id)
        .distinct(ConsentRecord.purpose)
        .order_by(ConsentRecord.purpose, ConsentRecord.seq.desc())
    )
    if exact is not None:
        query = query.where(ConsentRecord.purpose == exact)
    elif prefix is not None:
        query = query.where(ConsentRecord.purpose.startswith(prefix, autoescape=True))
    return {row.purpose: row for row in session.scalars(query)}


def _append(
    session: TenantSession,
    actor: Principal | None,
    patron_id: UUID,
    name: str,
    given: bool,
    method: ConsentMethod,
    notice_version: str | None,
    request_id: UUID | None,
) -> ConsentRecord:
    record = ConsentRecord(
        tenant_id=session.tenant_id,
        patron_id=patron_id,
        purpose=name,
        given=given,
        method=ConsentMethod(method).value,
        notice_version=notice_version,
        recorded_by=actor.id if actor is not None else None,
        request_id=request_id,
    )
    session.add(record)
    return record


# -- cookie choices ----------------------------------------------------------------------------


def record_cookie_choice(
    session: TenantSession,
    visitor_id: UUID,
    *,
    analytics: bool,
    preferences: bool,
    notice_version: str,
    patron_id: UUID | None = None,
    actor: Principal | None = None,
) -> CookieState:
    """Record a browser's cookie choice (and the patron's, when one is signed in). The same choice made
    again by the same browser under the same notice adds no row (a banner shown twice is one choice).
    A choice naming another version of the notice than the one in force is refused (StaleNotice)."""
    notice_version = notices.label_to_record(session, notice_version)
    latest = session.scalars(
        select(CookieChoice)
        .where(CookieChoice.tenant_id == session.tenant_id, CookieChoice.visitor_id == visitor_id)
        .order_by(CookieChoice.seq.desc())
        .limit(1)
    ).first()
    wanted = (patron_id, analytics, preferences, notice_version)
    unchanged = (
        latest is not None
        and (
            latest.patron_id,
            latest.analytics,
            latest.preferences,
            latest.notice_version,
        )
        == wanted
    )
    choice = latest if unchanged else None
    if choice is None:
        choice = CookieChoice(
            tenant_id=session.tenant_id,
            visitor_id=visitor_id,
            patron_id=patron_id,
            analytics=analytics,
            preferences=preferences,
            notice_version=notice_version,
        )
        session.add(choice)
        session.flush()
    audit.record(
        session,
        Action.COOKIE_CHOICE_RECORDED,
        ("visitor", visitor_id),
        actor=actor,
        details={
            "analytics": analytics,
            "preferences": preferences,
            "notice_version": notice_version,
            "patron_id": patron_id,
            "unchanged": unchanged,
        },
    )
    return _cookie_state(choice)


def cookie_choice(
    session: TenantSession, *, visitor_id: UUID | None = None, patron_id: UUID | None = None, actor=None
) -> CookieState:
    """The latest choice of a browser, or of a patron (any of their browsers); none: strictly necessary only."""
    query = select(CookieChoice).where(CookieChoice.tenant_id == session.tenant_id)
    if patron_id is not None:
        query = query.where(CookieChoice.patron_id == patron_id)
        target = (TARGET, patron_id)
    elif visitor_id is not None:
        query = query.where(CookieChoice.visitor_id == visitor_id)
        target = ("visitor", visitor_id)
    else:
        target = ("visitor", None)
    row = session.scalars(query.order_by(CookieChoice.seq.desc()).limit(1)).first() if target[1] else None
    state = _cookie_state(row) if row is not None else NO_COOKIE_CHOICE
    audit.record(session, Action.COOKIE_CHOICE_VIEWED, target, actor=actor, details={"chosen": state.chosen})
    return state


def _cookie_state(row: CookieChoice) -> CookieState:
    return CookieState(True, row.analytics, row.preferences, True, row.notice_version, row.recorded_at)


def forget_withdrawn(session: TenantSession, cutoff: datetime | None, limit: int) -> list[UUID]:
    """Remove at most `limit` consent records of the institution made moot by a withdrawal more than 3 years
    old (the withdrawal and the records of its patron and purpose before it), never those of a patron all of
    whose data a legal hold keeps; their ids. The database function applies the period: `cutoff` is the
    caller's view of it and is not passed on."""
    found = session.execute(text("SELECT record_id FROM bookwarden_forget_withdrawn_consent(:n)"), {"n": limit})
    return list(found.scalars())
