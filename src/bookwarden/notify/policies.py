"""The optional-mail policy: who decides whether an optional mail may be queued and still be sent.

Optional mail (newsletters, events...) is sent only to a patron who agrees to its topic now, and
carries a signed one-click unsubscribe link. Consent is a privacy matter, above this area, so the
outbox does not import it: the privacy area registers its policy here (privacy/consent/unsubscribe.py)
and the outbox asks it for every optional mail, when queued and again when delivered.

Fail closed: with no policy registered, no optional mail is queued and none is delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bookwarden.core.errors import InvalidInput

if TYPE_CHECKING:
    from bookwarden.db.session import TenantSession


@dataclass(frozen=True)
class OptionalMailPolicy:
    # Raises unless this optional mail may be queued: (session, to, headers, body) -> None.
    check_optional_mail: Callable[[TenantSession, str, dict[str, str], str], None]
    # Whether the patron the mail's link names still agrees to its topic, at delivery: (session, headers).
    still_wanted: Callable[[TenantSession, dict[str, str]], bool]


_policy: list[OptionalMailPolicy] = []


def register_optional_mail_policy(policy: OptionalMailPolicy) -> None:
    _policy[:] = [policy]


def optional_mail_policy() -> OptionalMailPolicy:
    if not _policy:
        raise InvalidInput(
            "optional mail cannot be queued or sent: no consent policy is loaded (bookwarden.areas.load())"
        )
    return _policy[0]
