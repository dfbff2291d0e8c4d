"""The platform DPO's escalations in the operator console: late requests and complaints of every
institution (metadata, never their content), and taking one up."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.privacy.escalations import service as dpo_escalations
from bookwarden.privacy.escalations.service import View
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
OVERSIGHT = Depends(requires(Permission.PLATFORM_PRIVACY_OVERSIGHT))
HOME = "/operator/escalations"
entry(
    Console.OPERATOR,
    "Privacy oversight",
    "DPO escalations",
    HOME,
    Permission.PLATFORM_PRIVACY_OVERSIGHT,
    "late requests and complaints of every institution",
)


@router.get(HOME)
def escalations(
    request: Request, principal: Principal = OVERSIGHT, view: Annotated[View, Query()] = View.UNACKNOWLEDGED
):
    found = dpo_escalations.listing(request.app.state.db, principal, view)
    return page(
        request,
        Console.OPERATOR,
        "console/escalations.html",
        title="DPO escalations",
        rows=found,
        view=view,
        views=list(View),
    )


@router.post(HOME + "/{tenant_id}/{escalation_id}/acknowledge")
def acknowledge(request: Request, tenant_id: UUID, escalation_id: UUID, principal: Principal = OVERSIGHT):
    dpo_escalations.acknowledge(request.app.state.db, principal, tenant_id, escalation_id)
    return RedirectResponse(HOME, status_code=303)
