"""Guards a patron's record is changed and deleted under, registered by the areas that set them.

Privacy decides when a patron's record must not change (a restriction of processing, GDPR art. 18)
and when it must not go (a legal hold). Those areas build on this one, so the library does not import
them: they register their checks here (privacy/restrictions/hooks.py, privacy/retention/hooks.py) and
every change or deletion of a patron runs every check.

Fail closed: until both kinds of guard are registered, no patron is changed or deleted, because a
restricted patron changed, or a held one erased, could not be undone.

The sharing gate (objections, restrictions, no direct marketing: privacy/consent/gate.py) is registered
here too, for the bulk export of patrons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from bookwarden.db.session import TenantSession

# guard(session, patron_id) raises (Conflict, RestrictedProcessing...) when the act must not happen.
Guard = Callable[["TenantSession", UUID], None]

_before_change: list[Guard] = []
_before_delete: list[Guard] = []


def guard_patron_change(guard: Guard) -> Guard:
    if guard not in _before_change:
        _before_change.append(guard)
    return guard


def guard_patron_deletion(guard: Guard) -> Guard:
    if guard not in _before_delete:
        _before_delete.append(guard)
    return guard


def check_patron_change(session: TenantSession, patron_id: UUID) -> None:
    _run(_before_change, "changed", session, patron_id)


def check_patron_deletion(session: TenantSession, patron_id: UUID) -> None:
    _run(_before_delete, "deleted", session, patron_id)


def _run(guards: list[Guard], what: str, session: TenantSession, patron_id: UUID) -> None:
    if not guards:
        raise RuntimeError(f"no patron can be {what} before the privacy guards are loaded (bookwarden.areas.load())")
    for guard in guards:
        guard(session, patron_id)


# -- the sharing gate --------------------------------------------------------------------------------
# Objections are privacy's, above this area, yet the bulk export lets every patron leave the platform
# in one file: privacy registers its gate here (privacy/consent/hooks.py) and the export asks it.
# Fail closed: with no gate registered, no export is made.

# gate(session, path, purpose, patron_ids or None for all, actor=) -> a decision with `excluded`
# ({patron id: reason}) and `allows(patron_id)`; it records its own audit event and refuses direct marketing.
SharingGate = Callable[..., Any]

_sharing_gate: list[SharingGate] = []


def register_sharing_gate(gate: SharingGate) -> SharingGate:
    _sharing_gate[:] = [gate]
    return gate


def sharing_gate() -> SharingGate:
    if not _sharing_gate:
        raise RuntimeError(
            "no patron data can leave the platform before the sharing gate is loaded (bookwarden.areas.load())"
        )
    return _sharing_gate[0]
