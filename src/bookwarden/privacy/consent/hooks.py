"""Consent's part in lower layers: the outbox asks it about every optional mail (notify/policies.py), and
the bulk export of patrons asks its sharing gate (library/guards.py).

Registered when the manifest loads the privacy area, so neither notify nor the library imports privacy.
"""

from __future__ import annotations

from bookwarden.library.guards import register_sharing_gate
from bookwarden.notify.policies import OptionalMailPolicy, register_optional_mail_policy
from bookwarden.privacy.consent.gate import check_sharing
from bookwarden.privacy.consent.unsubscribe import check_optional_mail, still_wanted

register_optional_mail_policy(OptionalMailPolicy(check_optional_mail, still_wanted))
register_sharing_gate(check_sharing)
