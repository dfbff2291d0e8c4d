"""The privacy notice over HTTP: anyone reads the version in force; privacy officers publish and list versions.

The read is open (no sign-in, like the portal's cookie banner): a notice is public by nature, and whoever is
about to give their data must be able to read it first.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at definition time.

from datetime import date
from typing import Annotated, Literal, Union

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from bookwarden.api.deps import database, requires, tenant_scope
from bookwarden.api.problems import responses
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.core.text import line, lines
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.privacy.notices import service as notices
from bookwarden.privacy.notices.service import NoticeOut, VersionOut
from bookwarden.tenancy.service import get_tenant

router = APIRouter(tags=["privacy: notice"])
MANAGE = Depends(requires(Permission.PRIVACY_NOTICE_MANAGE))
TenantSlug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="the institution's slug")]


class PublishBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: line(notices.MAX_LABEL) = Field(description="the version's label, new for the institution (e.g. 2027-01)")
    text: lines(notices.MAX_TEXT) = Field(description="the notice itself, as patrons will read it")
    last_updated: date | None = Field(None, description='the "last updated" date the notice states; default: today')


class MinorChangeIn(PublishBase):
    material: Literal[False] = Field(description="not a material change: nobody is mailed")
    change_summary: lines(notices.MAX_SUMMARY) | None = Field(None, description="what changed, if you wish")


class MaterialChangeIn(PublishBase):
    material: Literal[True] = Field(description="a material change: every patron with an address on file is mailed")
    change_summary: lines(notices.MAX_SUMMARY) = Field(description="what changed, in a few lines (quoted in the mail)")


# Two shapes, so the schema itself says a material change must say what changed.
PublishIn = Union[MinorChangeIn, MaterialChangeIn]  # noqa: UP007 - FastAPI reads it at definition time


class VersionList(BaseModel):
    items: list[VersionOut]


@router.get("/api/v1/portal/{tenant_slug}/privacy-notice", response_model=NoticeOut, responses=responses(404, 422))
def read_notice(tenant_slug: TenantSlug, db: Database = Depends(database)):
    """The institution's privacy notice in force: its text, version and "last updated" date. No sign-in."""
    with platform_session(db) as session:
        tenant_id = get_tenant(session, tenant_slug).id
    with tenant_session(db, tenant_id) as session:
        return notices.read_in_force(session)


@router.get("/api/v1/privacy/notice/versions", response_model=VersionList, responses=responses(401, 403))
def list_versions(principal: Principal = MANAGE, db: Database = Depends(database)):
    """Every version published, newest (in force) first, with how far a material change has been mailed."""
    with tenant_scope(db, principal) as session:
        return VersionList(items=notices.versions(session, principal))


@router.post(
    "/api/v1/privacy/notice/versions",
    status_code=201,
    response_model=VersionOut,
    responses=responses(401, 403, 409, 422),
)
def publish_version(body: PublishIn, principal: Principal = MANAGE, db: Database = Depends(database)):
    """Publish a new version: in force at once. A material change queues a service mail to every patron with an
    address on file, saying what changed and where to read the notice."""
    with tenant_scope(db, principal) as session:
        return notices.publish(
            session,
            principal,
            version=body.version,
            notice_text=body.text,
            material=body.material,
            change_summary=body.change_summary,
            last_updated=body.last_updated,
        )
