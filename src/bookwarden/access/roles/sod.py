"""Segregation of duties: role sets nobody may hold together, checked when a role is assigned.

Static conflicts here; dynamic ones (maker-checker: who asks cannot approve) live with the
actions they guard.
"""

from __future__ import annotations

from collections.abc import Iterable

from bookwarden.access.permissions import BuiltinRole

# Each pair: holding one, an account may not be given the other. Auditing must stay independent
# of those whose work is audited.
CONFLICTS: tuple[frozenset[str], ...] = (
    frozenset({BuiltinRole.TENANT_ADMIN, BuiltinRole.AUDITOR}),
    frozenset({BuiltinRole.SECURITY_OFFICER, BuiltinRole.AUDITOR}),
)


def conflicts(held: Iterable[str], new_role: str) -> list[tuple[str, str]]:
    """(held role, new role) pairs that the assignment of `new_role` would violate."""
    return sorted(
        (other, new_role) for pair in CONFLICTS if new_role in pair for other in pair - {new_role} if other in set(held)
    )
