"""The principal: who a request or command acts as. Tokens today; sessions and SSO later."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from uuid import UUID


class Scope(enum.StrEnum):
    LIBRARY_READ = "library:read"
    LIBRARY_WRITE = "library:write"
    TENANTS_MANAGE = "tenants:manage"


TENANT_SCOPES = frozenset({Scope.LIBRARY_READ, Scope.LIBRARY_WRITE})
OPERATOR_SCOPES = frozenset({Scope.TENANTS_MANAGE})


class PrincipalKind(enum.StrEnum):
    # Kinds of credential, not credentials.
    API_TOKEN = "api_token"  # noqa: S105
    OPERATOR_TOKEN = "operator_token"  # noqa: S105


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: UUID
    tenant_id: UUID | None
    scopes: frozenset[Scope]

    @property
    def is_operator(self) -> bool:
        return self.kind is PrincipalKind.OPERATOR_TOKEN
