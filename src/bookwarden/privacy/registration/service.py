"""Self-registration with an age gate: people register themselves as patrons of an institution that
allows it; under 13 they are refused and nothing about them is kept.

Off unless the institution turns it on (its administrators, policy.manage). A registration is
throttled per source address (identity/throttle.py: 5 in 15 minutes, then growing waits), counted
whether it succeeds or not: nobody tries birth dates until one passes, and a script cannot fill the
patron table. The patron is created through the hosted domain's one creation path
(library/service.py), so it is sealed under its own subject key like any other.

The age gate. The person's age is taken on today's date in the institution's time zone (UTC unless
it set one): someone born on 2013-06-01 may register from 2026-06-01 on, in that zone. A refusal is
decided before anything is written or any key is made; it is recorded as
patron.self_registration_refused with the rule only (never a name, address or birth date) and
answered 403 age-gate without quoting what was sent.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict

from bookwarden.access.authorize import authorize
from bookwarden.access.permissions import Permission
from bookwarden.access.principal import Principal
from bookwarden.audit.events import PLATFORM_CHAIN, Action, Outcome
from bookwarden.audit.record import record, record_now
from bookwarden.core.errors import BookwardenError, InvalidInput, NotFound
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.db.session import Database, TenantSession, platform_session, tenant_session
from bookwarden.identity import throttle
from bookwarden.identity.signin import service as signin
from bookwarden.library import schemas
from bookwarden.library import service as library
from bookwarden.privacy.retention.models import SelfRegistrationSetting
from bookwarden.tenancy.models import TenantStatus

MINIMUM_AGE = 13
TIMEZONES = frozenset(available_timezones())
TARGET = "self_registration"


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
    today: date | None = None,
) -> UUID:
    """A person registers as a patron of the institution `slug`; the new patron's id."""
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
        if refusal is None:
            created = library.create(
                session, library.PATRONS, schemas.PatronCreate(name=name, email=email, birth_date=birth_date)
            )
            record(session, Action.SELF_REGISTERED, ("patron", created.id), details={"channel": "self_registration"})
            return created.id
    _record_refusal(db, tenant.id, refusal)
    raise refusal


def _record_refusal(db: Database, tenant_id: UUID, refusal: BookwardenError) -> None:
    # The rule that refused, and nothing the person sent.
    details = {"problem": refusal.slug}
    if isinstance(refusal, UnderMinimumAge):
        details["minimum_age"] = MINIMUM_AGE
    action, outcome = Action.SELF_REGISTRATION_REFUSED, Outcome.DENIED
    record_now(db, action, (TARGET, None), outcome=outcome, details=details, tenant_id=tenant_id)
