"""Blocked source addresses in the operators' console: the active blocks, a block by hand, an unblock
(`platform.blocks.*`). The same services as the API's routes (monitor/response/routes.py); a refusal (the
allowlist, a network too wide) is shown on the page in the service's words."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import platform_session
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.jails import allowlist
from bookwarden.monitor.response.routes import BlockIn
from bookwarden.web.consoles import Console, done, entry, page, read_form
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
HOME = "/operator/blocks"
READ = Depends(requires(Permission.PLATFORM_BLOCKS_READ))
MANAGE = Depends(requires(Permission.PLATFORM_BLOCKS_MANAGE))
Done = Annotated[str | None, Query(alias="done", max_length=20)]
DONE = {
    "blocked": "Blocked: every HTTP process refuses it within about a second.",
    "unblocked": "Unblocked: the block ended now.",
}
entry(
    Console.OPERATOR, "Alerts", "Blocked addresses", HOME, Permission.PLATFORM_BLOCKS_READ,
    "active response: who is refused, until when; block or unblock by hand",
)  # fmt: skip


def _page(request: Request, principal: Principal, status_code: int = 200, **context):
    with platform_session(request.app.state.db) as session:
        active = blocks.list_active(session, principal)
    manage = Permission.PLATFORM_BLOCKS_MANAGE in principal.permissions
    context = {"error": "", "given": {}, **context}
    return page(
        request, Console.OPERATOR, "console/blocks.html", status_code=status_code, title="Blocked addresses",
        blocks=active, manage=manage, **context,
    )  # fmt: skip


@router.get(HOME)
def block_list(request: Request, principal: Principal = READ, done_: Done = None):
    """Active blocks, soonest to end first."""
    return _page(request, principal, done=done(done_, DONE))


@router.post(HOME)
def block_address(request: Request, principal: Principal = MANAGE):
    """Block an address or network by hand, for the minutes given."""
    try:
        body = read_form(request, BlockIn)
        with platform_session(request.app.state.db) as session:
            blocks.block(
                session,
                principal,
                body.address,
                timedelta(minutes=body.minutes),
                allowlist(request.app.state.settings),
                body.reason,
            )
    except BookwardenError as refused:
        return _page(request, principal, status_code=refused.status, error=refused.detail)
    return RedirectResponse(f"{HOME}?done=blocked", status_code=303)


@router.post(HOME + "/{block_id}/unblock")
def unblock(request: Request, block_id: UUID, principal: Principal = MANAGE):
    """End an active block before its time."""
    with platform_session(request.app.state.db) as session:
        blocks.unblock(session, principal, block_id)
    return RedirectResponse(f"{HOME}?done=unblocked", status_code=303)
