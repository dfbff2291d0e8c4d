"""Preferences, consent history, cookie choices and one-click unsubscribe over HTTP.

The signed-in patron manages their own (`/privacy/me/...`, self.service); staff act on a patron's
behalf (`/privacy/patrons/{id}/...`, privacy.preferences.manage). Two kinds of route are open, each
authorised by something other than a sign-in: the unsubscribe link (its signed token) and the
portal's cookie banner (before anyone signs in; it records the browser's own choice only).
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

import uuid
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import REFUSED_MAIL_KINDS, SharingPath, sharing_marker
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity import throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.signin.routes import source_address
from bookwarden.privacy.consent import mailings, objections, unsubscribe
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent.models import ConsentMethod
from bookwarden.privacy.consent.service import Channel, Choice, CookieState, Topic
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.notices.service import NoticeShown
from bookwarden.tenancy.service import get_tenant
from bookwarden.web.templates import render

router = APIRouter(tags=["privacy: consent and preferences"])
PRIVACY = "/api/v1/privacy"
PATRON = Depends(requires(Permission.SELF_SERVICE))
STAFF = Depends(requires(Permission.PRIVACY_PREFERENCES_MANAGE))
VISITOR_COOKIE = "bw_visitor"
# Cookie choices are asked again after six months: long enough not to nag, short enough to stay a choice.
VISITOR_MAX_AGE = 183 * 24 * 3600
HTML = {200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "a page for the reader"}}

NoticeVersion = line(40)
TenantSlug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="the institution's slug")]
Token = Annotated[str, Path(pattern=unsubscribe.TOKEN_PATTERN, description="the signed token of the link")]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChoiceIn(Input):
    channel: Channel
    topic: Topic  # a service topic is refused with 409: it cannot be turned off
    subscribed: bool


class OwnPreferencesIn(Input):
    choices: Annotated[list[ChoiceIn], Field(min_length=1, max_length=50)]
    notice_version: NoticeVersion  # the privacy notice shown when the choice was made


class PreferencesIn(OwnPreferencesIn):
    method: Literal["staff", "form"] = "staff"  # staff: in person or by phone; form: a form the patron signed


class PreferenceOut(BaseModel):
    channel: Channel
    topic: Topic
    optional: bool
    subscribed: bool
    since: datetime | None
    method: ConsentMethod | None
    notice_version: str | None
    why_always_on: str | None


class PreferencesOut(BaseModel):
    patron_id: UUID
    preferences: list[PreferenceOut]
    objections: list[str]  # scopes the patron objects to now (third_party_disclosure, purpose:<name>)
    # The notice in force: what a choice made now must name (another version is refused with 409).
    privacy_notice: NoticeShown | None


class ConsentRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    purpose: str
    given: bool
    method: ConsentMethod
    notice_version: str | None
    recorded_at: datetime
    recorded_by: UUID | None
    request_id: UUID | None


class ConsentHistoryOut(BaseModel):
    patron_id: UUID
    items: list[ConsentRecordOut]


class CookieChoiceIn(Input):
    analytics: bool
    preferences: bool
    notice_version: NoticeVersion


class CookieChoiceOut(BaseModel):
    strictly_necessary: bool
    analytics: bool
    preferences: bool
    chosen: bool
    notice_version: str | None
    recorded_at: datetime | None
    # The notice in force: what a choice made now must name (another version is refused with 409).
    privacy_notice: NoticeShown | None = None


# -- preferences ------------------------------------------------------------------------------


def _preferences_out(session, principal, patron_id) -> PreferencesOut:
    found = consent.preferences(session, principal, patron_id)
    return PreferencesOut(
        patron_id=patron_id,
        preferences=[PreferenceOut(**p.__dict__) for p in found],
        objections=objections.current_objections(session, patron_id),
        privacy_notice=notices.shown(session, notices.in_force(session)),
    )


def _choices(body: OwnPreferencesIn) -> list[Choice]:
    return [Choice(c.channel, c.topic, c.subscribed) for c in body.choices]


@router.get(f"{PRIVACY}/me/preferences", response_model=PreferencesOut, responses=responses(401, 403))
def own_preferences(principal: Principal = PATRON, db: Database = Depends(database)):
    """The signed-in patron's communication preferences: optional topics (off until chosen) and the
    service messages that are always sent, with why."""
    with tenant_scope(db, principal) as session:
        return _preferences_out(session, principal, accounts.own_patron_id(session, principal))


@router.put(f"{PRIVACY}/me/preferences", response_model=PreferencesOut, responses=responses(401, 403, 409, 422))
def change_own_preferences(body: OwnPreferencesIn, principal: Principal = PATRON, db: Database = Depends(database)):
    """Change the signed-in patron's preferences; each change is a consent record (method portal)."""
    with tenant_scope(db, principal) as session:
        patron_id = accounts.own_patron_id(session, principal)
        consent.set_preferences(
            session,
            principal,
            patron_id,
            _choices(body),
            method=ConsentMethod.PORTAL,
            notice_version=body.notice_version,
        )
        return _preferences_out(session, principal, patron_id)


@router.get(
    f"{PRIVACY}/patrons/{{patron_id}}/preferences", response_model=PreferencesOut, responses=responses(401, 403, 404)
)
def patron_preferences(patron_id: UUID, principal: Principal = STAFF, db: Database = Depends(database)):
    """A patron's communication preferences, for staff helping them."""
    with tenant_scope(db, principal) as session:
        return _preferences_out(session, principal, consent.staff_patron_id(session, principal, patron_id))


@router.put(
    f"{PRIVACY}/patrons/{{patron_id}}/preferences",
    response_model=PreferencesOut,
    responses=responses(401, 403, 404, 409, 422),
)
def change_patron_preferences(
    patron_id: UUID, body: PreferencesIn, principal: Principal = STAFF, db: Database = Depends(database)
):
    """Record a patron's choices on their behalf (at the desk, by phone, or from a form they signed)."""
    with tenant_scope(db, principal) as session:
        consent.staff_patron_id(session, principal, patron_id)
        consent.set_preferences(
            session,
            principal,
            patron_id,
            _choices(body),
            method=ConsentMethod(body.method),
            notice_version=body.notice_version,
        )
        return _preferences_out(session, principal, patron_id)


@router.get(f"{PRIVACY}/me/consents", response_model=ConsentHistoryOut, responses=responses(401, 403))
def own_consents(principal: Principal = PATRON, db: Database = Depends(database)):
    """The signed-in patron's consent history: what, when, how, under which notice; given or withdrawn."""
    with tenant_scope(db, principal) as session:
        patron_id = accounts.own_patron_id(session, principal)
        return ConsentHistoryOut(patron_id=patron_id, items=consent.history(session, principal, patron_id))


@router.get(
    f"{PRIVACY}/patrons/{{patron_id}}/consents", response_model=ConsentHistoryOut, responses=responses(401, 403, 404)
)
def patron_consents(patron_id: UUID, principal: Principal = STAFF, db: Database = Depends(database)):
    """A patron's consent history, oldest first."""
    with tenant_scope(db, principal) as session:
        consent.staff_patron_id(session, principal, patron_id)
        return ConsentHistoryOut(patron_id=patron_id, items=consent.history(session, principal, patron_id))


# -- cookie choices ------------------------------------------------------------------------------


def _visitor(request: Request) -> UUID | None:
    try:
        return UUID(request.cookies.get(VISITOR_COOKIE, ""))
    except ValueError:
        return None


def _remember_visitor(response: Response, visitor_id: UUID) -> None:
    # Strictly necessary: it only remembers the choice itself, so it needs no choice to be set.
    response.set_cookie(
        VISITOR_COOKIE, str(visitor_id), max_age=VISITOR_MAX_AGE, secure=True, httponly=True, samesite="lax", path="/"
    )


def _cookie_out(session, state: CookieState) -> CookieChoiceOut:
    return CookieChoiceOut(**state.__dict__, privacy_notice=notices.shown(session, notices.in_force(session)))


def _tenant_id(db: Database, slug: str) -> UUID:
    with platform_session(db) as session:
        return get_tenant(session, slug).id


@router.get("/api/v1/portal/{tenant_slug}/cookie-choice", response_model=CookieChoiceOut, responses=responses(404, 422))
def visitor_cookie_choice(request: Request, tenant_slug: TenantSlug, db: Database = Depends(database)):
    """The cookies the portal may set for this browser; no choice yet means strictly necessary only."""
    tenant_id = _tenant_id(db, tenant_slug)
    with tenant_session(db, tenant_id) as session:
        return _cookie_out(session, consent.cookie_choice(session, visitor_id=_visitor(request)))


@router.put(
    "/api/v1/portal/{tenant_slug}/cookie-choice",
    response_model=CookieChoiceOut,
    responses=responses(404, 409, 422, 429),
)
def record_visitor_cookie_choice(
    request: Request,
    response: Response,
    tenant_slug: TenantSlug,
    body: CookieChoiceIn,
    db: Database = Depends(database),
):
    """Record this browser's cookie choice (the portal's banner, before anyone signs in). Open to anyone,
    so each network address has a budget of writes (120 in 10 minutes), then 429 with Retry-After."""
    # The budget is throttle.COOKIE_CHOICE; the API description names its numbers, not our files.
    with platform_session(db) as session:
        throttle.spend(session, throttle.COOKIE_CHOICE, db.master, source_address(request))
    tenant_id = _tenant_id(db, tenant_slug)
    visitor_id = _visitor(request) or uuid.uuid4()
    with tenant_session(db, tenant_id) as session:
        state = consent.record_cookie_choice(
            session,
            visitor_id,
            analytics=body.analytics,
            preferences=body.preferences,
            notice_version=body.notice_version,
        )
        shown = _cookie_out(session, state)
    _remember_visitor(response, visitor_id)
    return shown


@router.get(f"{PRIVACY}/me/cookie-choice", response_model=CookieChoiceOut, responses=responses(401, 403))
def own_cookie_choice(principal: Principal = PATRON, db: Database = Depends(database)):
    """The signed-in patron's latest cookie choice, from any browser."""
    with tenant_scope(db, principal) as session:
        patron_id = accounts.own_patron_id(session, principal)
        return _cookie_out(session, consent.cookie_choice(session, patron_id=patron_id, actor=principal))


@router.put(f"{PRIVACY}/me/cookie-choice", response_model=CookieChoiceOut, responses=responses(401, 403, 409, 422))
def record_own_cookie_choice(
    request: Request,
    response: Response,
    body: CookieChoiceIn,
    principal: Principal = PATRON,
    db: Database = Depends(database),
):
    """Record the signed-in patron's cookie choice, for this browser and for the patron."""
    visitor_id = _visitor(request) or uuid.uuid4()
    with tenant_scope(db, principal) as session:
        state = consent.record_cookie_choice(
            session,
            visitor_id,
            analytics=body.analytics,
            preferences=body.preferences,
            notice_version=body.notice_version,
            patron_id=accounts.own_patron_id(session, principal),
            actor=principal,
        )
        shown = _cookie_out(session, state)
    _remember_visitor(response, visitor_id)
    return shown


# -- one-click unsubscribe ---------------------------------------------------------------------------


@router.get(f"{unsubscribe.PATH}{{token}}", response_class=HTMLResponse, responses={**HTML, **responses(404, 422)})
def unsubscribe_page(request: Request, token: Token, db: Database = Depends(database)):
    """The page the link opens: says what it would stop and asks for a click. It unsubscribes nobody
    by itself (mail scanners follow links)."""
    found = unsubscribe.confirmation(db, token)
    # no-store and no-referrer (the token is in the URL) come with every response (api/headers.py).
    return render(
        request, "consent/unsubscribe.html", title="Unsubscribe", done=False,
        what=consent.LABELS[found.topic], institution=found.institution,
    )  # fmt: skip


@router.post(f"{unsubscribe.PATH}{{token}}", response_class=HTMLResponse, responses={**HTML, **responses(404, 422)})
def unsubscribe_now(request: Request, token: Token, db: Database = Depends(database)):
    """RFC 8058 one-click unsubscribe (mail clients POST `List-Unsubscribe=One-Click`): honoured before
    this answers; a second POST changes nothing and answers the same. The signed token in the URL is the
    authority (a mail client sends no page's CSRF token), so this is an API route, drawn in the pages' layout."""
    done = unsubscribe.unsubscribe(db, token)
    return render(
        request, "consent/unsubscribe.html", title="Unsubscribed", done=True,
        what=consent.LABELS[done.topic], institution=done.institution,
    )  # fmt: skip


# -- mailings ------------------------------------------------------------------------------------------


# One header line: no control character or line separator anywhere, something besides spaces
# (notify/service.py checks the same).
CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
SUBJECT_LINE = rf"^[^{CONTROL}]*[^{CONTROL}\s][^{CONTROL}]*$"


class MailingIn(Input):
    # An optional topic; the marketing kinds are named only to be refused with the reason (403
    # direct-marketing-refused): a mail kind is a purpose, and direct marketing is never one.
    topic: Literal["newsletters", "events", "recommendations", "surveys", *REFUSED_MAIL_KINDS]
    subject: Annotated[str, StringConstraints(max_length=200, pattern=SUBJECT_LINE)]
    message: lines(20_000)


class MailingOut(BaseModel):
    topic: Topic
    queued: int
    without_address: int
    objected: int  # agreed, but left out: they object to the topic or to marketing, or are restricted


@router.post(
    f"{PRIVACY}/mailings",
    status_code=202,
    response_model=MailingOut,
    responses=responses(401, 403, 422),
    openapi_extra=sharing_marker(SharingPath.OPTIONAL_MAIL),
)
def send_mailing(
    body: MailingIn,
    principal: Principal = Depends(requires(Permission.MAILINGS_SEND)),
    db: Database = Depends(database),
):
    """Queue optional mail on a topic to every patron who agreed to it by email; each message carries its
    own one-click unsubscribe link. Patrons who did not agree, or withdrew, get nothing; nor do patrons who
    object to the topic or to marketing, or whose processing is restricted (counted in objected)."""
    with tenant_scope(db, principal) as session:
        sent = mailings.send(session, principal, body.topic, subject=body.subject, message=body.message)
        return MailingOut(
            topic=sent.topic, queued=sent.queued, without_address=sent.without_address, objected=sent.objected
        )
