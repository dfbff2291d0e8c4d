"""How powerful a set of permissions is: one definition, for every control that depends on it.

DESIGN invariant 7: segregation of duties, maker-checker on granting and defining roles, the second
factor at sign-in, the password floor and the notices that can never be muted are computed from the
permissions an account (or a role) holds, never from a role's name. A custom role carrying one of
the permissions below is administrative exactly as the built-in tenant admin is, so renaming powers
into a role of one's own steps around none of those controls.

An account's class is the class of the union of its roles' permissions, which is also the strictest
class among its roles: administrative as soon as one role it holds is.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from bookwarden.core.permissions import PLATFORM_PERMISSIONS, Permission


class PowerClass(enum.StrEnum):
    ORDINARY = "ordinary"  # the hosted domain, privacy work without the powers below, the patron portal
    ADMINISTRATIVE = "administrative"  # runs the institution's controls, or reads their record
    PLATFORM = "platform"  # operator staff: never a tenant role (tenant roles cannot hold platform permissions)

    @property
    def privileged(self) -> bool:
        """Held to the administrator's controls: a second person to be granted, a second factor, the longer
        password floor, notices that cannot be muted."""
        return self is not PowerClass.ORDINARY


P = Permission
# Who may do what: roles and their grants, machine credentials, operators' access to the data, and who
# hears of every such change.
ACCESS_CONTROL = frozenset(
    {P.ROLES_MANAGE, P.ROLES_ASSIGN, P.TOKENS_MANAGE, P.OPERATOR_GRANTS_APPROVE, P.SECURITY_CONTACTS_MANAGE}
)
# Who exists: creating, disabling and deleting accounts, resetting their passwords and second factors.
ACCOUNT_ADMINISTRATION = frozenset({P.ACCOUNTS_MANAGE})
# The record of everything above (and everything else): reading it shows who did what to whom, and
# verifying it is the independent check on those who run the controls.
AUDIT = frozenset({P.AUDIT_READ, P.AUDIT_VERIFY})
# Whoever controls the identity provider decides who signs in as whom (identity/saml/config.py).
SIGN_ON = frozenset({P.SSO_MANAGE})
# The security policy accounts are held to: password policies.
POLICY = frozenset({P.POLICY_MANAGE})

# Not here, on purpose: privacy.notice.manage (what patrons are told; it changes nobody's access and reaches
# no data, though publishing a material change mails patrons a fixed service notice) and
# privacy.concerns.handle (reading reports patrons send in, like complaints). Privacy work, ordinary.
ADMINISTRATIVE_PERMISSIONS = ACCESS_CONTROL | ACCOUNT_ADMINISTRATION | AUDIT | SIGN_ON | POLICY
# Running the controls: every administrative permission but reading and verifying their record.
CONTROL_ADMINISTRATION = ADMINISTRATIVE_PERMISSIONS - AUDIT


def power_class(permissions: Iterable[Permission]) -> PowerClass:
    """The class of whoever holds `permissions` (a role's, an account's, a token's)."""
    held = frozenset(permissions)
    if held & PLATFORM_PERMISSIONS:
        return PowerClass.PLATFORM
    if held & ADMINISTRATIVE_PERMISSIONS:
        return PowerClass.ADMINISTRATIVE
    return PowerClass.ORDINARY


def privileging(permissions: Iterable[Permission]) -> list[str]:
    """The permissions among these that make their holder privileged, sorted (for messages and requests)."""
    return sorted(p.value for p in frozenset(permissions) & (ADMINISTRATIVE_PERMISSIONS | PLATFORM_PERMISSIONS))
