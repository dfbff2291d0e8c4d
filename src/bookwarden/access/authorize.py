"""authorize(): the one decision point. Every refusal is recorded.

A refusal ends the action's transaction, so its audit event is written by whoever reports the
refusal, in a transaction of its own: the API's problem handler, or the command line.
"""

from __future__ import annotations

import structlog

from bookwarden.access.permissions import Permission
from bookwarden.errors import Forbidden
from bookwarden.identity.principal import Principal

log = structlog.get_logger()


def authorize(principal: Principal, permission: Permission) -> None:
    """Return if `principal` holds `permission`; otherwise record the denial and refuse."""
    if permission in principal.permissions:
        return
    log.warning(
        "access.denied",
        principal_kind=principal.kind.value,
        principal_id=str(principal.id),
        tenant_id=str(principal.tenant_id) if principal.tenant_id else None,
        permission=permission.value,
    )
    raise Forbidden(f"this needs the {permission} permission, which the caller does not hold", permission.value)
