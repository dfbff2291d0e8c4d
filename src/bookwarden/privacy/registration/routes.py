"""Self-registration over HTTP: the open form (per institution, off unless enabled) and its setting."""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database
from bookwarden.identity.signin.routes import source_address, too_many_attempts
from bookwarden.identity.throttle import TooManyAttempts
from bookwarden.library.schemas import Email, Text
from bookwarden.privacy.notices.service import NoticeShown
from bookwarden.privacy.registration import service as self_registration
from bookwarden.privacy.registration.service import TIMEZONES, SettingsOut

router = APIRouter(prefix="/api/v1/self-registration", tags=["self-registration"], responses=responses(422))
POLICY = Depends(requires(Permission.POLICY_MANAGE))
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="the institution's slug")]
TimeZone = Literal[tuple(sorted(TIMEZONES))]  # type: ignore[valid-type]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegistrationIn(Input):
    institution: Slug
    name: Text
    email: Email
    birth_date: date
    notice_version: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="the privacy notice version shown to the person; another than the one in force: 409"
    )


class RegistrationOut(BaseModel):
    patron_id: UUID
    email_confirmed: bool = Field(
        description="false until the link mailed to the address is opened; until then the address is used for nothing"
    )
    confirm_by: datetime = Field(description="when the registration lapses (is erased) unless its address is confirmed")
    privacy_notice: NoticeShown | None = Field(
        description="the privacy notice in force when the registration was made, recorded with it (none: null)"
    )


class ConfirmIn(Input):
    token: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = Field(
        description="the token of the link mailed to the address (after #token= in the link)"
    )


class ConfirmedOut(BaseModel):
    patron_id: UUID
    email_confirmed: bool


class SettingsIn(Input):
    enabled: bool
    timezone: TimeZone = "UTC"  # whose calendar says when someone turns 13


@router.post("", status_code=201, response_model=RegistrationOut, responses=responses(403, 404, 409, 429))
def register(body: RegistrationIn, request: Request, db: Database = Depends(database)):
    """Register yourself as a patron of an institution that allows it. Under 13: refused (403 age-gate)
    and nothing you sent is kept. Throttled per network address (429 with Retry-After). A link goes to the
    address you gave: until it is opened the address is used for nothing, and unconfirmed by `confirm_by`
    (48 hours) the registration lapses. The privacy notice in force is recorded with the registration and
    shown in the answer; naming another version than the one in force: 409 notice-version-stale, nothing kept."""
    try:
        registered = self_registration.register(
            db,
            body.institution,
            source_address(request),
            name=body.name,
            email=body.email,
            birth_date=body.birth_date,
            notice_version=body.notice_version,
        )
    except TooManyAttempts as refused:
        return too_many_attempts(request, refused)
    return RegistrationOut(
        patron_id=registered.patron_id,
        email_confirmed=False,
        confirm_by=registered.confirm_by,
        privacy_notice=registered.notice,
    )


@router.post("/confirm", response_model=ConfirmedOut, responses=responses(401, 403))
def confirm_email(body: ConfirmIn, db: Database = Depends(database)):
    """Confirm that the address of a registration is yours, with the link mailed to it (no sign-in: the signed
    one-time link is the proof). A forged, expired, used or lapsed link: 401 invalid-link."""
    patron_id = self_registration.confirm(db, body.token)
    return ConfirmedOut(patron_id=patron_id, email_confirmed=True)


@router.get("/settings", response_model=SettingsOut, responses=responses(401, 403))
def get_settings(principal: Principal = POLICY, db: Database = Depends(database)):
    with tenant_scope(db, principal) as session:
        return self_registration.view_settings(session, principal)


@router.put("/settings", response_model=SettingsOut, responses=responses(401, 403))
def put_settings(body: SettingsIn, principal: Principal = POLICY, db: Database = Depends(database)):
    """Open or close self-registration, and set the time zone the age gate counts birthdays in."""
    with tenant_scope(db, principal) as session:
        return self_registration.set_settings(session, principal, enabled=body.enabled, timezone=body.timezone)
