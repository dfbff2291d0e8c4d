"""Self-registration with the age gate, and the confirmation of the address it was made with.

The same service as POST /api/v1/self-registration and /confirm (privacy/registration/service.py): off
unless the institution opens it, throttled per network address, people under the minimum age refused
before anything is kept, the privacy notice in force shown on the form and recorded with the registration.
"""

from __future__ import annotations

from datetime import date

from fastapi import Request

from bookwarden.core.errors import BookwardenError, NotFound
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.registration import service as registration
from bookwarden.tenancy.service import SLUG, get_tenant
from bookwarden.web.routing import PageRouter, form
from bookwarden.web.session import source_address
from bookwarden.web.templates import render, render_refusal

router = PageRouter()
TITLE = {"title": "Register as a patron"}


def _notice(request: Request, slug: str):
    """The notice in force at institution `slug` (None: unknown institution, or none published)."""
    if not SLUG.match(slug):
        return None
    db = request.app.state.db
    try:
        with platform_session(db) as session:
            tenant_id = get_tenant(session, slug).id
    except NotFound:
        return None
    with tenant_session(db, tenant_id) as session:
        return notices.shown(session, notices.in_force(session))


def _form(request: Request, status_code: int = 200, **context):
    values = {"institution": "", "name": "", "email": "", "birth_date": "", "error": "", **context}
    notice = _notice(request, values["institution"]) if values["institution"] else None
    return render(request, "portal/register.html", status_code=status_code, notice=notice, **TITLE, **values)


@router.get("/register")
def register_form(request: Request, institution: str = ""):
    return _form(request, institution=institution.strip().lower()[:63])


@router.post("/register")
def register(request: Request):
    fields = form(request)
    values = {
        "institution": fields.get("institution", "").strip().lower()[:63],
        "name": fields.get("name", "").strip()[:200],
        "email": fields.get("email", "").strip()[:254],
        "birth_date": fields.get("birth_date", "").strip()[:10],
    }
    try:
        born = date.fromisoformat(values["birth_date"])
    except ValueError:
        return _form(request, 422, error="type your date of birth as year-month-day", **values)
    if not all(values.values()):
        return _form(request, 422, error="fill in every field", **values)
    notice = _notice(request, values["institution"])
    try:
        registered = registration.register(
            request.app.state.db, values["institution"], source_address(request), name=values["name"],
            email=values["email"], birth_date=born, notice_version=notice.version if notice else None,
        )  # fmt: skip
    except BookwardenError as refused:
        if refused.slug == registration.UnderMinimumAge.slug:
            # Nothing the person sent is shown back or kept: the form comes back empty.
            return render_refusal(
                request, "portal/register.html", refused, notice=None, **TITLE, **dict.fromkeys(values, "")
            )
        return render_refusal(request, "portal/register.html", refused, notice=notice, **TITLE, **values)
    return render(request, "portal/registered.html", title="Check your mail", confirm_by=registered.confirm_by)


@router.get("/confirm-email")
def confirm_form(request: Request):
    """The confirmation link mailed to a new registration's address lands here (identity/links.py PAGE)."""
    return render(request, "portal/confirm_email.html", title="Confirm your address", confirmed=False, error="")


@router.post("/confirm-email")
def confirm(request: Request):
    try:
        registration.confirm(request.app.state.db, form(request).get("token", "").strip()[:1024])
    except BookwardenError as refused:
        return render_refusal(
            request, "portal/confirm_email.html", refused, title="Confirm your address", confirmed=False
        )
    return render(request, "portal/confirm_email.html", title="Address confirmed", confirmed=True, error="")
