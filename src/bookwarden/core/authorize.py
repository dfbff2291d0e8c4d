"""authorize(): the one decision point. Every refusal is recorded.

A refusal ends the action's transaction, so its audit event (access.denied, naming the missing
permission) is written by whoever reports the refusal, in a transaction of its own: the API's
problem handler (api/problems.py) for every route and the services they call, and the command
wrapper of the console (`command` in cli.py) for every command. Nothing else calls authorize()
today; a new caller (a job, say) must record its refusals the same way.
"""

from __future__ import annotations

from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal


def authorize(principal: Principal, permission: Permission) -> None:
    """Return if `principal` holds `permission`; otherwise refuse, naming it (the reporter records it)."""
    if permission in principal.permissions:
        return
    raise Forbidden(f"this needs the {permission} permission, which the caller does not hold", permission.value)
