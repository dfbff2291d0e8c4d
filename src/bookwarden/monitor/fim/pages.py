"""File integrity in the operators' console: the baselines (proposed, active, decided) and the last scans
(`platform.fim.read`), and a proposed baseline approved or rejected by a second operator (`platform.fim.manage`).
The same services as `bookwarden fim status|approve|reject` (monitor/fim/cli.py); proposing one scans every
watched path and stays a command. The service's refusal (the same person who proposed it, a signature that no
longer verifies) is shown on the page in its words."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.responses import RedirectResponse

from bookwarden.core.errors import BookwardenError
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import platform_session
from bookwarden.monitor.fim import service
from bookwarden.web.consoles import Console, done, entry, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
HOME = "/operator/file-integrity"
READ = Depends(requires(Permission.PLATFORM_FIM_READ))
MANAGE = Depends(requires(Permission.PLATFORM_FIM_MANAGE))
Done = Annotated[str | None, Query(alias="done", max_length=20)]
DONE = {
    "approved": "Approved: scans now compare with this baseline.",
    "rejected": "Rejected: scans still compare with the baseline in force.",
}
entry(
    Console.OPERATOR, "File integrity", "Baselines and scans", HOME, Permission.PLATFORM_FIM_READ,
    "signed baselines, a second operator's approval, the last scans' findings",
)  # fmt: skip


def _page(request: Request, principal: Principal, status_code: int = 200, **context):
    with platform_session(request.app.state.db) as session:
        baselines, runs = service.baselines(session, principal)
    manage = Permission.PLATFORM_FIM_MANAGE in principal.permissions
    context = {"error": "", **context}
    return page(
        request, Console.OPERATOR, "console/file_integrity.html", status_code=status_code,
        title="File integrity", baselines=baselines, runs=runs, manage=manage, **context,
    )  # fmt: skip


@router.get(HOME)
def status(request: Request, principal: Principal = READ, done_: Done = None):
    return _page(request, principal, done=done(done_, DONE))


def _decision(verb: str, past: str, approve: bool) -> None:
    @router.post(HOME + "/{baseline_id}/" + verb, name=f"page_{verb}_baseline")
    def decision(request: Request, baseline_id: UUID, principal: Principal = MANAGE):
        """Another operator than the one who proposed it (the service refuses the same person)."""
        try:
            with platform_session(request.app.state.db) as session:
                service.decide(session, principal, baseline_id, request.app.state.settings, approve)
        except BookwardenError as refused:
            return _page(request, principal, status_code=refused.status, error=refused.detail)
        return RedirectResponse(f"{HOME}?done={past}", status_code=303)


_decision("approve", "approved", True)
_decision("reject", "rejected", False)
