"""Purposes of sharing patron data beyond the institution, and the one purpose never allowed.

Every path that lets patron data (or counts made from it) leave the institution names a purpose
and is one of the `SharingPath`s; the sharing gate (privacy/consent/gate.py) decides, for each
patron, whether their data may go. This module is only the vocabulary, below every layer, so the
library's bulk export and the console can name a path and check a purpose without importing privacy.

Direct marketing is refused outright, whatever the basis and whatever the patron chose: the
statement promises "We do not disclose personal information to third parties for direct marketing
purposes", and an objection to direct marketing (GDPR art. 21(2)-(3)) admits no balancing at all.
A purpose is a name (`[a-z0-9_]{1,80}`, as objections name them: `purpose:<name>`); one that names
marketing or advertising in any spelling of those words is refused before anything is read, with
403 direct-marketing-refused.
"""

from __future__ import annotations

import enum
import re

from bookwarden.core.errors import Forbidden, InvalidInput

PURPOSE_PATTERN = r"^[a-z0-9_]{1,80}$"
_PURPOSE = re.compile(PURPOSE_PATTERN)
# Substrings, not words: "telemarketing", "directmarketing" and "targeted_advertisement" are refused too.
_MARKETING = re.compile(r"market|advertis|promot")
# Mail kinds are a closed list (the optional topics); these are the marketing kinds the API names only to
# refuse them, so that a client asking for one learns why.
REFUSED_MAIL_KINDS = ("direct_marketing", "marketing", "advertising", "promotions")
# The OpenAPI extension (and the console command attribute) declaring that a route or command lets
# patron data leave the institution, and by which path: tests/invariants/test_sharing_gate.py reads it.
SHARING_MARKER = "x-bookwarden-sharing"


class SharingPath(enum.StrEnum):
    """The ways patron data leaves the institution; each consults the gate."""

    DISCLOSURE = "disclosure"  # named patrons' data to a third party (privacy/disclosures)
    BULK_EXPORT = "bulk_export"  # every patron in one file that leaves the platform (library/export.py)
    PUBLISHER_REPORT = "publisher_report"  # counts over loans, to a publisher (privacy/reports)
    OPTIONAL_MAIL = "optional_mail"  # the institution's optional mail (privacy/consent/mailings.py)


class PurposeRefused(Forbidden):
    """A purpose the platform never serves: direct marketing. Forbidden (403), not invalid input: the name
    is well formed and the API's schema accepts it; a standing rule forbids it, to everyone."""

    slug, title = "direct-marketing-refused", "Direct marketing refused"


def checked_purpose(purpose: str, field: str = "purpose") -> str:
    """`purpose` when it is a name and not direct marketing; InvalidInput or PurposeRefused otherwise."""
    if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
        raise InvalidInput(f"{field}: a name of 1-80 lowercase letters, digits and _")
    if _MARKETING.search(purpose):
        raise PurposeRefused(
            f"{field}: {purpose!r} is direct marketing (or advertising), which patron data is never used or shared "
            "for, whatever the legal basis or the patron's choices; nothing was shared or queued"
        )
    return purpose


def sharing_marker(path: SharingPath) -> dict[str, str]:
    """The `openapi_extra` of a route through which patron data leaves the institution by `path`."""
    return {SHARING_MARKER: SharingPath(path).value}
