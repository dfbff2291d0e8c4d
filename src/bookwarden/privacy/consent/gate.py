"""The sharing gate: the one function every path that lets patron data leave the institution asks.

`check_sharing(session, path, purpose, patron_ids)` is asked by every disclosure
(privacy/disclosures), every bulk export of patrons (library/export.py, through the registry in
library/guards.py), every publisher report (privacy/reports) and every mailing and optional mail
(privacy/consent/mailings.py, and the outbox's own check through notify/policies.py). It

1. refuses direct marketing as a purpose, outright (core/purposes.py: 403 direct-marketing-refused);
2. names the patrons whose data must not go, each with its reason:
   - `objected:third_party_disclosure`: the patron objects to disclosure to third parties, on every
     path whose data reaches a third party (a disclosure, a bulk export, a publisher report);
   - `objected:purpose:<name>`: the patron objects to this purpose (the statement's "a purpose
     materially different from the one it was collected for"), on every path; optional mail also
     stops for an objection to (direct) marketing, which GDPR art. 21(3) makes absolute;
   - `restricted`: processing of the patron's data is restricted (art. 18): it is only kept;
3. records `privacy.sharing.checked` with the path, the purpose, how many were considered and left
   out, for each reason (`excluded_reasons`), and a SHA-256 of the ids left out, in the caller's
   transaction.

What the caller does with patrons left out is its path's rule (README "Opt-out is a gate"): a
disclosure, an export, a report and a mailing leave their data out and go on with the others; a
disclosure whose every subject is left out, and one optional mail to a patron left out, are refused.
Only a legal obligation (GDPR art. 6(1)(c)) passes objections and restrictions, and only on a
disclosure: art. 21 weighs an objection against the controller's own interests or public task, and
cannot reach what a law obliges it to disclose. The override is recorded with how many it overrode.

`excluded(...)` answers the same question for one patron without recording it: the outbox asks it
for every optional mail, when queued and again when delivered, so that no code path can mail a
patron who objected, even one that never went through a mailing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Uuid, any_, literal, select
from sqlalchemy.dialects.postgresql import ARRAY

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.errors import InvalidInput
from bookwarden.core.principal import Principal
from bookwarden.core.purposes import SharingPath, checked_purpose
from bookwarden.db.session import TenantSession
from bookwarden.privacy.consent.models import Objection
from bookwarden.privacy.consent.objections import THIRD_PARTY_DISCLOSURE, purpose_scope
from bookwarden.privacy.restrictions.models import Restriction

TARGET = "sharing"
RESTRICTED = "restricted"
OBJECTED = "objected:"
# Paths whose data reaches a third party: an objection to third-party disclosure stops them.
TO_THIRD_PARTIES = frozenset({SharingPath.DISCLOSURE, SharingPath.BULK_EXPORT, SharingPath.PUBLISHER_REPORT})
# Optional mail promotes the institution's services: a patron who objects to marketing gets none (art. 21(3)).
MARKETING_SCOPES = ("purpose:direct_marketing", "purpose:marketing")


@dataclass(frozen=True)
class SharingDecision:
    path: SharingPath
    purpose: str
    excluded: dict[UUID, str]  # patron -> reason ("objected:<scope>" or "restricted")
    overridden: int = 0  # left in despite an objection or restriction: a legal obligation
    considered: list[UUID] | None = None  # None: every patron of the institution

    def allows(self, patron_id: UUID) -> bool:
        return patron_id not in self.excluded

    @property
    def allowed(self) -> list[UUID]:
        """The patrons named whose data may go, in the order given (not for an all-patrons decision)."""
        if self.considered is None:
            raise TypeError("a decision over every patron lists who is left out, not who may go")
        return [p for p in self.considered if p not in self.excluded]


def scopes(path: SharingPath, purpose: str) -> tuple[str, ...]:
    """The objection scopes that stop `path` for `purpose`."""
    found = [purpose_scope(purpose)]
    if path in TO_THIRD_PARTIES:
        found.append(THIRD_PARTY_DISCLOSURE)
    if path is SharingPath.OPTIONAL_MAIL:
        found.extend(MARKETING_SCOPES)
    return tuple(dict.fromkeys(found))


def check_sharing(
    session: TenantSession,
    path: SharingPath,
    purpose: str,
    patron_ids: Iterable[UUID] | None,
    *,
    legal_obligation: bool = False,
    actor: Principal | None = None,
) -> SharingDecision:
    """Which of `patron_ids` (None: every patron of the institution) must be left out of sharing by
    `path` for `purpose`, and why; recorded as privacy.sharing.checked. Refuses direct marketing."""
    path = SharingPath(path)
    purpose = checked_purpose(purpose)
    if legal_obligation and path is not SharingPath.DISCLOSURE:
        raise InvalidInput("a legal obligation passes objections only on a disclosure to the one it obliges")
    considered = None if patron_ids is None else list(dict.fromkeys(patron_ids))
    reasons = _reasons(session, path, purpose, considered)
    overridden = len(reasons) if legal_obligation else 0
    excluded = {} if legal_obligation else reasons
    decision = SharingDecision(path, purpose, excluded, overridden, considered)
    single = considered is not None and len(considered) == 1
    audit.record(
        session,
        Action.SHARING_CHECKED,
        ("patron", considered[0]) if single else (TARGET, None),
        actor=actor,
        details={
            "path": path.value,
            "purpose": purpose,
            "considered": "all" if considered is None else len(considered),
            "excluded": len(excluded),
            # Details are flat: each reason with its count, "objected:third_party_disclosure=2".
            "excluded_reasons": [f"{reason}={n}" for reason, n in sorted(Counter(excluded.values()).items())],
            "excluded_sha256": _digest(excluded),
            "legal_obligation": legal_obligation,
            "overridden": overridden,
        },
    )
    return decision


def excluded(session: TenantSession, path: SharingPath, purpose: str, patron_id: UUID) -> str | None:
    """Why `patron_id` must be left out of `path` for `purpose` (None: they may be included), unrecorded:
    for the outbox's check of each optional mail, whose mailing recorded its own decision."""
    return _reasons(session, SharingPath(path), checked_purpose(purpose), [patron_id]).get(patron_id)


def _reasons(session: TenantSession, path: SharingPath, purpose: str, patron_ids: list[UUID] | None) -> dict[UUID, str]:
    if patron_ids is not None and not patron_ids:
        return {}
    wanted = scopes(path, purpose)
    latest = (
        select(Objection.patron_id, Objection.scope, Objection.objected)
        .where(Objection.tenant_id == session.tenant_id, Objection.scope.in_(wanted))
        .distinct(Objection.patron_id, Objection.scope)
        .order_by(Objection.patron_id, Objection.scope, Objection.seq.desc())
    )
    restricted = select(Restriction.patron_id).where(Restriction.tenant_id == session.tenant_id)
    if patron_ids is not None:
        ids = literal(patron_ids, ARRAY(Uuid))
        latest = latest.where(Objection.patron_id == any_(ids))
        restricted = restricted.where(Restriction.patron_id == any_(ids))
    reasons: dict[UUID, str] = {}
    # The first scope in `wanted` order names the reason: the purpose, then third parties, then marketing.
    rank = {scope: i for i, scope in enumerate(wanted)}
    for patron_id, scope, objected in sorted(session.execute(latest), key=lambda row: rank[row[1]]):
        if objected:
            reasons.setdefault(patron_id, OBJECTED + scope)
    for patron_id in session.scalars(restricted):
        reasons.setdefault(patron_id, RESTRICTED)
    return reasons


def _digest(excluded: dict[UUID, str]) -> str | None:
    if not excluded:
        return None
    return hashlib.sha256("\n".join(sorted(str(p) for p in excluded)).encode()).hexdigest()
