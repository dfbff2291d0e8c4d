"""The principal: who a request or command acts as. Tokens today; sessions and SSO resolve to the same."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from uuid import UUID

from bookwarden.access.permissions import Permission


class PrincipalKind(enum.StrEnum):
    # Kinds of credential, not credentials.
    API_TOKEN = "api_token"  # noqa: S105
    OPERATOR_TOKEN = "operator_token"  # noqa: S105
    ACCOUNT = "account"
    OPERATOR = "operator"  # an operator account's sign-in session: acts exactly as an operator token does
    SYSTEM = "system"  # the platform's own scheduled duties (grant expiry, purges)


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: UUID
    tenant_id: UUID | None
    permissions: frozenset[Permission]
    # Set when an operator acts inside a tenant: the approved grant that lets them (every use names it).
    grant_id: UUID | None = None

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


# The platform's own scheduled duties acting (grant expiry, checkpoints, deadlines): no tenant, no permission.
SYSTEM = Principal(PrincipalKind.SYSTEM, UUID(int=0), None, frozenset())


def permissions_from(names: list[str]) -> frozenset[Permission]:
    """Stored permission names to the catalogue; a name no longer in the catalogue grants nothing."""
    known = {p.value for p in Permission}
    return frozenset(Permission(n) for n in names if n in known)
