"""Data-subject requests' part in lower layers: a restricted patron's record refuses changes
(library/guards.py asks before every change of a patron)."""

from __future__ import annotations

from bookwarden.library.guards import guard_patron_change
from bookwarden.privacy.restrictions.service import ensure_unrestricted

guard_patron_change(ensure_unrestricted)
