"""Every area's tables, imported together so that foreign keys between areas always resolve.

`db/session.py` imports this module: any code that opens a session has the whole schema.
"""

from bookwarden.access import approval_models as approvals  # noqa: F401
from bookwarden.access import grant_models as grants  # noqa: F401
from bookwarden.access import models as access  # noqa: F401
from bookwarden.identity import models as identity  # noqa: F401
from bookwarden.identity import operator_models as operators  # noqa: F401
from bookwarden.identity import saml_models as saml  # noqa: F401
from bookwarden.jobs import models as jobs  # noqa: F401
from bookwarden.library import models as library  # noqa: F401
from bookwarden.notify import models as notify  # noqa: F401
from bookwarden.privacy import complaint_models as complaints  # noqa: F401
from bookwarden.privacy import consent_models as consents  # noqa: F401
from bookwarden.privacy import disclosure_models as disclosures  # noqa: F401
from bookwarden.privacy import escalation_models as dpo_escalations  # noqa: F401
from bookwarden.privacy import report_models as publisher_reports  # noqa: F401
from bookwarden.privacy import request_models as privacy_requests  # noqa: F401
from bookwarden.privacy import retention_models as retention  # noqa: F401
from bookwarden.privacy import subject_models as subject_rights  # noqa: F401
from bookwarden.tenancy import models as tenancy  # noqa: F401
