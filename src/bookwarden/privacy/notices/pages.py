"""The privacy notice in force, as a page: open to everyone (read before anyone gives their data).

The same service as GET /api/v1/portal/{slug}/privacy-notice (privacy/notices/service.py
`read_in_force`, which records the read); the text keeps its paragraphs and nothing else of markup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request

from bookwarden.db.session import platform_session, tenant_session
from bookwarden.privacy.notices import service as notices
from bookwarden.tenancy.service import get_tenant
from bookwarden.web.routing import PageRouter
from bookwarden.web.templates import render

router = PageRouter()
Slug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="the institution's slug")]


@router.get("/privacy-notice/{tenant_slug}")
def privacy_notice(request: Request, tenant_slug: Slug):
    db = request.app.state.db
    with platform_session(db) as session:
        tenant = get_tenant(session, tenant_slug)
    with tenant_session(db, tenant.id) as session:
        notice = notices.read_in_force(session)
    paragraphs = [part.strip() for part in notice.text.split("\n\n") if part.strip()]
    return render(
        request, "portal/privacy_notice.html", title="Privacy notice", notice=notice, institution=tenant,
        paragraphs=paragraphs,
    )  # fmt: skip
