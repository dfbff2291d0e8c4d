"""Consent's part in lower layers: the outbox asks it about every optional mail (notify/policies.py).

Registered when the manifest loads the privacy area, so notify never imports privacy.
"""

from __future__ import annotations

from bookwarden.notify.policies import OptionalMailPolicy, register_optional_mail_policy
from bookwarden.privacy.consent.unsubscribe import check_optional_mail, still_wanted

register_optional_mail_policy(OptionalMailPolicy(check_optional_mail, still_wanted))
