"""Segregation of duties: sets of permissions nobody may hold together, whatever roles carry them.

A separation is a pair of permission sets: an account may hold permissions from one side or the
other, never from both. It is decided on permissions, not role names (DESIGN invariant 7), so it is
checked wherever an account's permissions could come to straddle a pair: when any role, built-in or
custom, is given to an account; when a custom role is defined (a role straddling a pair could never
be held); and when a custom role's permissions change (its holders would then straddle one).
Dynamic separations (maker-checker: who asks cannot approve) live with the actions they guard.

The one separation today keeps the audit independent: verifying the trail and taking its evidence
(audit.verify, the auditor's) against running the controls the trail records (access/power.py
CONTROL_ADMINISTRATION: accounts, roles, tokens, operator grants, security contacts, sign-on,
password policy). Reading the trail is on neither side: an administrator investigating an incident
reads it, and reading changes nothing. The built-in conflicts follow from it: a tenant admin (who
manages accounts and roles) and a security officer (who sets password policy and security contacts)
cannot also be an auditor, and no custom role can put the two sides in one account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bookwarden.access.power import CONTROL_ADMINISTRATION
from bookwarden.core.permissions import Permission


@dataclass(frozen=True)
class Separation:
    one: frozenset[Permission]
    other: frozenset[Permission]
    reason: str


SEPARATIONS: tuple[Separation, ...] = (
    Separation(
        frozenset({Permission.AUDIT_VERIFY}),
        CONTROL_ADMINISTRATION,
        "verifying the audit trail must stay independent of running the controls it records",
    ),
)


@dataclass(frozen=True)
class Clash:
    """One separation a change would break: the permissions it brings, those they meet, and where those are held."""

    separation: Separation
    brought: tuple[str, ...]
    met: tuple[str, ...]
    held_in: tuple[str, ...]  # the roles already held that carry `met`; empty when the new permissions carry both

    def describe(self) -> str:
        return f"{self.separation.reason} ({', '.join(self.brought)} with {', '.join(self.met)})"


def conflicts(held: Mapping[str, Iterable[Permission]], permissions: Iterable[Permission]) -> list[Clash]:
    """The separations that giving `permissions` (a role's) to an account would break.

    `held`: each role the account holds besides, by name, with its permissions. Only a side these
    permissions bring counts: an account that straddled a pair before is not this change's doing.
    """
    new = frozenset(permissions)
    roles = {name: frozenset(granted) for name, granted in held.items()}
    found = []
    for separation in SEPARATIONS:
        for mine, theirs in ((separation.one, separation.other), (separation.other, separation.one)):
            brought = new & mine
            if not brought:
                continue
            carriers = sorted(name for name, granted in roles.items() if granted & theirs)
            met = (new & theirs) or frozenset().union(*(roles[name] & theirs for name in carriers))
            if met:
                held_in = () if new & theirs else tuple(carriers)
                found.append(Clash(separation, _names(brought), _names(met), held_in))
                break
    return found


def straddled(permissions: Iterable[Permission]) -> list[Clash]:
    """The separations one set of permissions (a role's) breaks by itself: such a role could never be held."""
    return conflicts({}, permissions)


def _names(permissions: Iterable[Permission]) -> tuple[str, ...]:
    return tuple(sorted(p.value for p in permissions))
