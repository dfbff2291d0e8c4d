"""Backups and restore drills in the operators' console (`platform.backups.read`): the catalogue and the drill
history, each drill's steps and why a failed one failed. The same services as the API's routes
(backup/routes.py); taking backups and running drills stay commands and jobs."""

from __future__ import annotations

from fastapi import Depends, Request

from bookwarden.backup import drill as drills
from bookwarden.backup import service
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import platform_session
from bookwarden.web.consoles import Console, entry, page
from bookwarden.web.routing import PageRouter
from bookwarden.web.session import requires

router = PageRouter()
BACKUPS, DRILLS = "/operator/backups", "/operator/drills"
READ = Depends(requires(Permission.PLATFORM_BACKUPS_READ))
entry(
    Console.OPERATOR, "Backups and drills", "Backups", BACKUPS, Permission.PLATFORM_BACKUPS_READ,
    "the catalogue: full, institution and keyring backups",
)  # fmt: skip
entry(
    Console.OPERATOR, "Backups and drills", "Restore drills", DRILLS, Permission.PLATFORM_BACKUPS_READ,
    "each drill's steps, and why a failed one failed",
)  # fmt: skip


@router.get(BACKUPS)
def backup_list(request: Request, principal: Principal = READ):
    """The backup catalogue, newest first (no folder: where backups live is the command line's business)."""
    with platform_session(request.app.state.db) as session:
        found = service.list_backups(session, principal)
    return page(request, Console.OPERATOR, "console/backups.html", title="Backups", backups=found)


@router.get(DRILLS)
def drill_list(request: Request, principal: Principal = READ):
    """Restore-drill history, newest first."""
    with platform_session(request.app.state.db) as session:
        found = drills.list_drills(session, principal)
    return page(request, Console.OPERATOR, "console/drills.html", title="Restore drills", drills=found)
