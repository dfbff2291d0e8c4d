"""The patron portal's communication preferences, consent history and cookie choice.

The same services as /api/v1/privacy/me/preferences, /me/consents and /me/cookie-choice
(privacy/consent/service.py), with the signed-in patron as actor: each change is a consent record
(method portal) naming the privacy notice in force. The one-click unsubscribe landing stays the API's
route (its link is in every optional mail: privacy/consent/routes.py), drawn in this layout.
"""

from __future__ import annotations

import uuid
from uuid import UUID

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError
from bookwarden.core.principal import Principal
from bookwarden.identity.accounts import service as accounts
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent.models import ConsentMethod
from bookwarden.privacy.consent.service import LABELS, OPTIONAL_TOPICS, Channel, Choice
from bookwarden.privacy.notices import service as notices
from bookwarden.web.errors import local_path
from bookwarden.web.portal import PATRON, render_portal
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import https, tenant_scope

router = PageRouter()
# The cookie that remembers a browser's choice (the API's name: one cookie, whichever way it was chosen).
VISITOR_COOKIE = "bw_visitor"
VISITOR_MAX_AGE = 183 * 24 * 3600
CHANNEL_LABELS = {Channel.EMAIL: "by email", Channel.SMS: "by text message", Channel.POST: "by post"}


def _notice_version(session) -> str | None:
    shown = notices.shown(session, notices.in_force(session))
    return shown.version if shown is not None else None


@router.get("/portal/preferences")
def preferences(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        patron_id = accounts.own_patron_id(session, principal)
        found = consent.preferences(session, principal, patron_id)
        done = "Your choices are saved." if "saved" in request.query_params else ""
        return render_portal(
            request, session, principal, "portal/preferences.html", title="Communication",
            preferences=found, labels=LABELS, channels=CHANNEL_LABELS, done=done, error="",
        )  # fmt: skip


@router.post("/portal/preferences")
def change_preferences(request: Request, principal: Principal = Depends(PATRON)):
    """Every optional topic on every channel is set from the form: a box left unticked is a no."""
    fields = form(request)
    chosen = set(fields.getlist("subscribed"))
    choices = [
        Choice(channel, topic, f"{channel.value}:{topic.value}" in chosen)
        for channel in Channel
        for topic in OPTIONAL_TOPICS
    ]
    try:
        with tenant_scope(request, principal) as session:
            patron_id = accounts.own_patron_id(session, principal)
            consent.set_preferences(
                session, principal, patron_id, choices, method=ConsentMethod.PORTAL,
                notice_version=_notice_version(session),
            )  # fmt: skip
    except BookwardenError as refused:
        with tenant_scope(request, principal) as session:
            found = consent.preferences(session, principal, accounts.own_patron_id(session, principal))
            return render_portal(
                request, session, principal, "portal/preferences.html", status_code=refused.status,
                title="Communication", preferences=found, labels=LABELS, channels=CHANNEL_LABELS,
                error=refused.detail,
            )  # fmt: skip
    return RedirectResponse("/portal/preferences?saved", status_code=303)


@router.get("/portal/consents")
def consents(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        history = consent.history(session, principal, accounts.own_patron_id(session, principal))
        return render_portal(
            request, session, principal, "portal/consents.html", title="Consent history", history=history
        )


@router.get("/portal/cookies")
def cookies(request: Request, principal: Principal = Depends(PATRON)):
    with tenant_scope(request, principal) as session:
        return render_portal(request, session, principal, "portal/cookies.html", title="Cookies")


@router.post("/portal/cookie-choice")
def cookie_choice(request: Request, principal: Principal = Depends(PATRON)):
    """The banner's buttons (choice=necessary|all) and the cookies page's boxes, recorded as the API records
    PUT /api/v1/privacy/me/cookie-choice: for this browser and for the patron."""
    fields = form(request)
    choice = fields.get("choice", "")
    analytics = choice == "all" or (choice == "custom" and fields.get("analytics") == "on")
    wanted_preferences = choice == "all" or (choice == "custom" and fields.get("preferences") == "on")
    visitor_id = _visitor(request) or uuid.uuid4()
    with tenant_scope(request, principal) as session:
        consent.record_cookie_choice(
            session, visitor_id, analytics=analytics, preferences=wanted_preferences,
            notice_version=_notice_version(session) or "", patron_id=accounts.own_patron_id(session, principal),
            actor=principal,
        )  # fmt: skip
    response = RedirectResponse(local_path(fields.get("back"), "/portal"), status_code=303)
    # Strictly necessary: it only remembers the choice itself, so it needs no choice to be set.
    response.set_cookie(
        VISITOR_COOKIE, str(visitor_id), max_age=VISITOR_MAX_AGE, secure=https(request), httponly=True,
        samesite="lax", path="/",
    )  # fmt: skip
    return response


def _visitor(request: Request) -> UUID | None:
    try:
        return UUID(request.cookies.get(VISITOR_COOKIE, ""))
    except ValueError:
        return None
