"""The principal: who a request or command acts as. Tokens, sessions and SSO resolve to the same.

Credentials are not people. A person (an institution's account, or an operator account) signs in
with a session and may own API tokens; every control that asks "is this the same person?"
(maker-checker, self-assignment, the CISO's own grant request) compares `person`, never the
credential's id, so a token cannot approve what its owner asked through a session or another of
their tokens, nor the other way round.

A token without an owner is a *service token*: minted only at the platform console for a machine of
the platform's (its provisioning), never over HTTP; institutions' from before, and the demo's, remain. It belongs to no
person, so it is a party of its own: it cannot approve its own request, and nothing links it to the
people who hold sessions (identity/tokens/service.py says what that means for the console).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from uuid import UUID

from bookwarden.core.permissions import Permission


class PrincipalKind(enum.StrEnum):
    # Kinds of credential, not credentials.
    API_TOKEN = "api_token"  # noqa: S105
    OPERATOR_TOKEN = "operator_token"  # noqa: S105
    ACCOUNT = "account"
    # An operator account's sign-in session, which only ever exists after its second factor passed
    # (identity/operators/signin.py): the one kind that may mint operator tokens and break glass.
    OPERATOR = "operator"
    # An operator account at the platform console (bookwarden CLI), known by the OS login mapped to it
    # (console.py): the person is the operator account, with that account's role and nothing more.
    CONSOLE = "console"
    SYSTEM = "system"  # the platform's own scheduled duties (grant expiry, purges)


# The credentials a person signs in with (their id is the person's); tokens name theirs in `owner_id`.
SIGNED_IN = frozenset({PrincipalKind.ACCOUNT, PrincipalKind.OPERATOR, PrincipalKind.CONSOLE})
TOKENS = frozenset({PrincipalKind.API_TOKEN, PrincipalKind.OPERATOR_TOKEN})


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: UUID
    tenant_id: UUID | None
    permissions: frozenset[Permission]
    # Set when an operator acts inside a tenant: the approved grant that lets them (every use names it).
    grant_id: UUID | None = None
    # A token's owner: the account (API token) or operator account (operator token) it acts for;
    # None for a service token, and for sessions (whose id is the person's already).
    owner_id: UUID | None = None

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None

    @property
    def person(self) -> UUID | None:
        """The person behind the credential: the account or operator account; None for a service token
        and for the platform's own duties."""
        if self.kind in SIGNED_IN:
            return self.id
        if self.kind in TOKENS:
            return self.owner_id
        return None

    def is_person(self, person_id: UUID | None) -> bool:
        """True when this principal is `person_id` acting, through a session or any of their tokens."""
        return person_id is not None and self.person == person_id

    def same_party(self, principal_id: UUID, person_id: UUID | None = None) -> bool:
        """True when this principal is the one recorded as `principal_id` (a credential's id, or a person's
        when it signed in) with `person_id` behind it: the same credential, or the same person through
        another credential. What maker-checker refuses."""
        return self.id == principal_id or self.is_person(principal_id) or self.is_person(person_id)


# The platform's own scheduled duties acting (grant expiry, checkpoints, deadlines): no tenant, no permission.
SYSTEM = Principal(PrincipalKind.SYSTEM, UUID(int=0), None, frozenset())


def permissions_from(names: list[str]) -> frozenset[Permission]:
    """Stored permission names to the catalogue; a name no longer in the catalogue grants nothing."""
    known = {p.value for p in Permission}
    return frozenset(Permission(n) for n in names if n in known)
