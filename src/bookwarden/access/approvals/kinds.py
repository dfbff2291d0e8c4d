"""The maker-checker kinds: each area declares the sensitive actions it defines, in its `approvals.py`.

A kind names its action, the permission both asker and approver must hold, how to check the asked
parameters now (so nobody approves a dud; the returned dict is exactly what gets bound and approved),
and what carrying it out means once approved. The approvals service looks kinds up here and imports no
domain: the areas register themselves when `bookwarden.areas.load()` imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bookwarden.access.approvals.models import ApprovalRequest, SensitiveAction
from bookwarden.core.permissions import Permission

if TYPE_CHECKING:
    from bookwarden.core.principal import Principal
    from bookwarden.db.session import TenantSession


def nothing_to_carry_out(session: TenantSession, approver: Principal, request: ApprovalRequest) -> None:
    """For kinds whose approval only unlocks a later step by the asker (a bulk export's one download)."""


@dataclass(frozen=True)
class ApprovalKind:
    action: SensitiveAction
    permission: Permission
    check: Callable[[TenantSession, dict], dict]
    carry_out: Callable[[TenantSession, Principal, ApprovalRequest], None] = nothing_to_carry_out


_kinds: dict[SensitiveAction, ApprovalKind] = {}


def register(*kinds: ApprovalKind) -> None:
    for kind in kinds:
        existing = _kinds.get(kind.action)
        if existing is not None and existing != kind:
            raise ValueError(f"approval kind {kind.action.value!r} is declared twice")
        _kinds[kind.action] = kind


def kind_for(action: SensitiveAction | str) -> ApprovalKind:
    try:
        return _kinds[SensitiveAction(action)]
    except KeyError:
        # Fail closed: an action nobody declared is never asked, approved or carried out.
        raise LookupError(
            f"no approval kind is declared for {action!r}: its area's approvals.py must be imported "
            "(bookwarden.areas.load() at the entry point)"
        ) from None


def declared() -> frozenset[SensitiveAction]:
    return frozenset(_kinds)
