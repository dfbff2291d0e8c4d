"""Self-registration with an age gate: people register themselves as patrons of an institution that
allows it; under 13 they are refused and nothing about them is kept.

Off unless the institution turns it on (its administrators, policy.manage). A registration is
throttled per source address (identity/throttle.py: 5 in 15 minutes, then growing waits), counted
whether it succeeds or not: nobody tries birth dates until one passes, and a script cannot fill the
patron table. The patron is created through the hosted domain's one creation path
(library/records.py), so it is sealed under its own subject key like any other.

The age gate. The person's age is taken on today's date in the institution's time zone (UTC unless
it set one): someone born on 2013-06-01 may register from 2026-06-01 on, in that zone. A refusal is
decided before anything is written or any key is made; it is recorded as
patron.self_registration_refused with the rule only (never a name, address or birth date) and
answered 403 age-gate without quoting what was sent.

Whose address? Anyone can type anyone's address into the form, so the address of a new registration
does not count until its owner confirms it: a signed, one-time link (identity/links.py, purpose
email-confirmation, its own signing key) is mailed to it, valid 48 hours. Until then the patron's
`email_unconfirmed_until` is set (library/records.py email_counts): the request form does not match the
address, no service, optional or notice mail is sent to it on the patron's behalf, and an access
package or erasure of the patron leaves the mail of that mailbox alone (it was never theirs). The link
is bound to the patron's address index and pending state, so it works once, and not after staff changed
the address (which vouches for it). The mail names no one: a stranger's registration must not put their
words in the owner's mailbox.

The privacy notice in force (privacy/notices/service.py) is shown in the answer and recorded with the
registration (a receipt that goes with the patron); a registration naming another version is refused like
any other refusal here, before anything is written.

A registration not confirmed in time lapses: the hourly job `privacy.self_registrations_lapse` erases the
patron through the usual erasure (rows, subject key shredded, certificate) and records
patron.self_registration_lapsed. A patron under a legal hold is kept until the hold ends.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

import structlog
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from bookwarden.audit.events import PLATFORM_CHAIN, Action, Outcome
from bookwarden.audit.record import record, record_now
from bookwarden.core.authorize import authorize
from bookwarden.core.clock import db_now
from bookwarden.core.errors import BookwardenError, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import SYSTEM, Principal
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import links, throttle
from bookwarden.identity.links import LinkPurpose
from bookwarden.identity.signin import service as signin
from bookwarden.library import records as library
from bookwarden.library import schemas
from bookwarden.library.models import Patron
from bookwarden.notify.models import MailCategory
from bookwarden.notify.service import mail_time, queue_mail
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.notices.models import Collection
from bookwarden.privacy.notices.service import NoticeShown
from bookwarden.privacy.retention import holds
from bookwarden.privacy.retention.models import SelfRegistrationSetting
from bookwarden.privacy.subjects import erasure
from bookwarden.tenancy.models import Tenant, TenantStatus
from bookwarden.tenancy.service import ensure_active

log = structlog.get_logger()

MINIMUM_AGE = 13
TIMEZONES = frozenset(available_timezones())
TARGET = "self_registration"
CONFIRM_WITHIN = links.LIFETIME[LinkPurpose.EMAIL_CONFIRMATION]  # 48 hours: then the registration lapses
CONFIRMATION_TEMPLATE = "self_registration_confirmation.txt"
LAPSE_JOB = "privacy.self_registrations_lapse"
LAPSE_EVERY = timedelta(hours=1)
LAPSE_BATCH = 100


class UnderMinimumAge(BookwardenError):
    slug, status, title = "age-gate", 403, "Registration refused"

    def __init__(self) -> None:
        # Says the rule, never what was sent: nothing about the person leaves or stays.
        super().__init__(
            f"people under {MINIMUM_AGE} cannot register themselves; nothing you sent was kept. "
            "A parent or guardian can ask the library to register you"
        )


class SelfRegistrationClosed(BookwardenError):
    slug, status, title = "self-registration-closed", 403, "Self-registration closed"

    def __init__(self, slug: str) -> None:
        super().__init__(f"institution {slug} does not take registrations here; ask the library to register you")


class RegistrationThrottled(throttle.TooManyAttempts):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.detail = (
            f"too many registrations from your network address; wait {retry_after} seconds before trying again "
            "(the Retry-After header says the same)"
        )
        self.args = (self.detail,)


class InvalidConfirmationLink(BookwardenError):
    """The one answer for every confirmation link that cannot be used, whatever the reason."""

    slug, status, title = "invalid-link", 401, "Link not valid"

    def __init__(self) -> None:
        super().__init__(
            "this confirmation link cannot be used: it has expired, has been used already, was not sent by us, "
            f"or the registration has lapsed ({CONFIRM_WITHIN.total_seconds() // 3600:.0f} hours after it was "
            "made) or been changed by the library since; register again, or ask the library"
        )


@dataclass(frozen=True)
class Registered:
    patron_id: UUID
    confirm_by: datetime  # the address counts once confirmed; unconfirmed by then, the registration lapses
    notice: NoticeShown | None = None  # the privacy notice in force when it was made (recorded with it)


class SettingsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    enabled: bool
    timezone: str


def birthday(born: date, years: int) -> date:
    """The day someone born on `born` turns `years` old: 29 February counts from 1 March in common years."""
    year = born.year + years
    if born.month == 2 and born.day == 29 and not calendar.isleap(year):
        return date(year, 3, 1)
    return born.replace(year=year)


def old_enough(born: date, today: date) -> bool:
    if born > today or today.year - born.year < MINIMUM_AGE:
        return False  # also keeps birthday() clear of years past 9999
    return birthday(born, MINIMUM_AGE) <= today


def today_in(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


# -- the institution's setting -----------------------------------------------------------------


def settings_of(session: TenantSession) -> SettingsOut:
    row = session.get(SelfRegistrationSetting, session.tenant_id)
    return SettingsOut(enabled=False, timezone="UTC") if row is None else SettingsOut.model_validate(row)


def view_settings(session: TenantSession, actor: Principal) -> SettingsOut:
    authorize(actor, Permission.POLICY_MANAGE)
    found = settings_of(session)
    record(session, Action.SELF_REGISTRATION_SETTINGS_VIEWED, (TARGET, None), actor=actor)
    return found


def set_settings(session: TenantSession, actor: Principal, *, enabled: bool, timezone: str) -> SettingsOut:
    authorize(actor, Permission.POLICY_MANAGE)
    if timezone not in TIMEZONES:
        raise InvalidInput(f"timezone: {timezone!r} is no IANA time zone name (e.g. Europe/London)")
    row = session.get(SelfRegistrationSetting, session.tenant_id, with_for_update=True)
    before = SettingsOut.model_validate(row) if row is not None else None
    if row is None:
        row = SelfRegistrationSetting(tenant_id=session.tenant_id)
        session.add(row)
    row.enabled, row.timezone, row.changed_by = enabled, timezone, actor.id
    session.flush()
    details = {"enabled": enabled, "timezone": timezone, "was_enabled": before.enabled if before else False}
    record(session, Action.SELF_REGISTRATION_SETTINGS_CHANGED, (TARGET, None), actor=actor, details=details)
    return SettingsOut.model_validate(row)


# -- registering ---------------------------------------------------------------------------------


def throttle_key(db: Database, source_address: str) -> bytes:
    """The address's key for registrations, apart from its sign-in failures (same /64 grouping for IPv6)."""
    return derive(throttle.address_key(db.master, source_address), KeyPurpose.SELF_REGISTRATION)


def register(
    db: Database,
    slug: str,
    source_address: str,
    *,
    name: str,
    email: str,
    birth_date: date,
    notice_version: str | None = None,
    today: date | None = None,
) -> Registered:
    """A person registers as a patron of the institution `slug`: the new patron, whose address counts only
    once the link mailed to it is opened (by `confirm_by`; the registration lapses after).

    The privacy notice in force is recorded with the registration (a receipt) and shown in the answer; a
    registration naming another version than the one in force is refused (StaleNotice) and nothing is kept."""
    key = throttle_key(db, source_address)
    with platform_session(db) as session:
        try:
            throttle.admit_address(session, key)
            throttled = None
        except throttle.TooManyAttempts as refused:
            throttled = RegistrationThrottled(refused.retry_after)
        tenant = signin.institution(session, slug)
    known = tenant is not None and tenant.status is TenantStatus.ACTIVE
    if throttled is not None:  # before anything else: a waiting caller learns nothing more, not even a slug
        _record_refusal(db, tenant.id if known else PLATFORM_CHAIN, throttled)
        raise throttled
    if not known:
        raise NotFound(f"no institution {slug} here")
    refusal: BookwardenError | None = None
    with tenant_session(db, tenant.id) as session:
        setting = settings_of(session)
        if not setting.enabled:
            refusal = SelfRegistrationClosed(tenant.slug)
        if refusal is None and not old_enough(birth_date, today or today_in(setting.timezone)):
            refusal = UnderMinimumAge()
        notice = None
        if refusal is None:
            try:
                notice = notices.checked(session, notice_version)
            except notices.StaleNotice as stale:
                refusal = stale
        if refusal is None:
            created = library.create(
                session, library.PATRONS, schemas.PatronCreate(name=name, email=email, birth_date=birth_date)
            )
            # The database's clock, which the lapse job reads; the link ends with the registration.
            now = db_now(session)
            patron = library.await_email_confirmation(session, created.id, now + CONFIRM_WITHIN)
            link = links.issue_for(
                db.master,
                LinkPurpose.EMAIL_CONFIRMATION,
                tenant.id,
                created.id,
                _state(db.master, patron),
                now=now.timestamp(),
            )
            mailed = _mail_confirmation(session, tenant, email, link)
            notices.record_receipt(session, notice, Collection.SELF_REGISTRATION, created.id)
            confirm_by = patron.email_unconfirmed_until
            details = {"channel": "self_registration", "email_confirm_by": confirm_by.isoformat(), "message_id": mailed}
            details["notice_version"] = notice.version if notice is not None else None
            record(session, Action.SELF_REGISTERED, ("patron", created.id), details=details)
            return Registered(created.id, confirm_by, notices.shown(session, notice))
    _record_refusal(db, tenant.id, refusal)
    raise refusal


def _record_refusal(db: Database, tenant_id: UUID, refusal: BookwardenError) -> None:
    # The rule that refused, and nothing the person sent.
    details = {"problem": refusal.slug}
    if isinstance(refusal, UnderMinimumAge):
        details["minimum_age"] = MINIMUM_AGE
    action, outcome = Action.SELF_REGISTRATION_REFUSED, Outcome.DENIED
    record_now(db, action, (TARGET, None), outcome=outcome, details=details, tenant_id=tenant_id)


# -- confirming the address ----------------------------------------------------------------------


def _state(master: MasterKeys, patron: Patron) -> str:
    """What a confirmation link is bound to: the patron, their address's index, whether it is still pending.

    Confirming ends the pending state, and staff setting the address changes the index or ends it too:
    either way every link made before stops working (one-time, without storing the link)."""
    index = patron.email_index.hex() if patron.email_index else "none"
    pending = "pending" if patron.email_unconfirmed_until is not None else "counts"
    return links.fingerprint(master, f"email-confirmation\x00{patron.id}\x00{index}\x00{pending}")


def _mail_confirmation(session: TenantSession, tenant: Tenant, address: str, link: links.IssuedLink) -> UUID:
    message = queue_mail(
        session,
        to=address,
        subject=f"[{tenant.name}] confirm your email address",
        template=CONFIRMATION_TEMPLATE,
        context={
            "institution": tenant.name,
            "url": links.link_url(LinkPurpose.EMAIL_CONFIRMATION, link.token),
            "expires": f"{mail_time(link.expires_at)} UTC",
        },
        category=MailCategory.SERVICE,
        # The link confirms the address to whoever holds it: it stays in the mailbox only, not in the outbox.
        forget_when_settled=True,
    )
    return message.id


def confirm(db: Database, token: str) -> UUID:
    """The owner of a self-registration's address opened the link mailed to it: the address counts from now on.

    Raises InvalidConfirmationLink for a forged, expired, used or lapsed link (alike, after the signature check).
    """
    try:
        claims = links.verify(db.master, token, LinkPurpose.EMAIL_CONFIRMATION)
    except links.InvalidLink:
        raise InvalidConfirmationLink() from None
    with tenant_session(db, claims.tenant_id) as session:
        if session.get(Tenant, claims.tenant_id) is None:
            raise InvalidConfirmationLink()  # offboarded: the link is as dead as a forged one
        ensure_active(session, claims.tenant_id)  # a suspended institution refuses every request
        # The row lock queues two uses of one link: the second sees the address counting, and is refused.
        patron = session.get(
            Patron, (claims.tenant_id, claims.account_id), with_for_update=True, populate_existing=True
        )
        usable = (
            patron is not None
            and patron.email_unconfirmed_until is not None
            and patron.email_unconfirmed_until > db_now(session)
            and links.state_matches(claims, _state(db.master, patron))
        )
        if usable:
            confirm_by = patron.email_unconfirmed_until.isoformat()
            library.email_confirmed(session, patron)
            details = {"email_confirm_by": confirm_by}
            record(session, Action.SELF_REGISTRATION_CONFIRMED, ("patron", patron.id), details=details)
            return patron.id
        if patron is not None:
            # A genuine link used again, or after the library changed the address: kept, for whoever looks.
            details = {"reason": "used, lapsed or changed since the link was sent"}
            record(
                session,
                Action.SELF_REGISTRATION_CONFIRMED,
                ("patron", patron.id),
                outcome=Outcome.FAILED,
                details=details,
            )
    raise InvalidConfirmationLink()


# -- lapsing -------------------------------------------------------------------------------------


def lapse_unconfirmed(db: Database, batch: int = LAPSE_BATCH) -> int:
    """Erase every self-registration whose address was not confirmed in time, in every institution; how many.

    Each batch commits with its erasures and events; a patron under a legal hold is left until the hold ends.
    One institution's failure does not stop the others; the job fails at the end, and runs again."""
    with platform_session(db) as session:
        tenant_ids = list(session.scalars(select(Tenant.id).order_by(Tenant.created_at, Tenant.id)))
    lapsed, failed = 0, 0
    for tenant_id in tenant_ids:
        try:
            lapsed += _lapse_in(db, tenant_id, batch)
        except Exception as exc:
            log.error("self_registration.lapse_failed", tenant_id=str(tenant_id), error_type=type(exc).__name__)
            failed += 1
    if failed:
        raise RuntimeError(f"lapsing self-registrations failed in {failed} institution(s); the next run resumes")
    return lapsed


def _lapse_in(db: Database, tenant_id: UUID, batch: int) -> int:
    lapsed, after = 0, None
    while True:
        with tenant_session(db, tenant_id) as session:
            query = select(Patron.id, Patron.email_unconfirmed_until).where(
                Patron.tenant_id == tenant_id, Patron.email_unconfirmed_until <= db_now(session)
            )
            if after is not None:
                query = query.where(Patron.id > after)
            due = session.execute(query.order_by(Patron.id).limit(batch).with_for_update(skip_locked=True)).all()
            for patron_id, confirm_by in due:
                if holds.active_hold(session, patron_id) is not None:
                    continue  # the erasure would refuse it too; it lapses once the hold ends
                try:
                    with session.begin_nested():
                        certificate = erasure.erase_patron(session, patron_id)
                        details = {"email_confirm_by": confirm_by.isoformat(), "certificate_id": certificate.id}
                        record(
                            session,
                            Action.SELF_REGISTRATION_LAPSED,
                            ("patron", patron_id),
                            actor=SYSTEM,
                            details=details,
                        )
                    lapsed += 1
                except (BookwardenError, SQLAlchemyError) as exc:
                    # The kind only: a message may quote a value. Tried again on the next run.
                    kind = exc.slug if isinstance(exc, BookwardenError) else type(exc).__name__
                    log.warning("self_registration.not_lapsed", patron_id=str(patron_id), error=kind)
        if len(due) < batch:
            return lapsed
        after = due[-1][0]
