"""Every area's tables, imported together so that foreign keys between areas always resolve.

`db/session.py` imports this module: any code that opens a session has the whole schema.
"""

from bookwarden.access.approvals import models as approvals  # noqa: F401
from bookwarden.access.grants import models as grants  # noqa: F401
from bookwarden.access.roles import models as access  # noqa: F401
from bookwarden.identity import models as identity  # noqa: F401
from bookwarden.identity.operators import models as operators  # noqa: F401
from bookwarden.identity.saml import models as saml  # noqa: F401
from bookwarden.jobs import models as jobs  # noqa: F401
from bookwarden.library import models as library  # noqa: F401
from bookwarden.notify import models as notify  # noqa: F401
from bookwarden.privacy.complaints import models as complaints  # noqa: F401
from bookwarden.privacy.consent import models as consents  # noqa: F401
from bookwarden.privacy.disclosures import models as disclosures  # noqa: F401
from bookwarden.privacy.escalations import models as dpo_escalations  # noqa: F401
from bookwarden.privacy.reports import models as publisher_reports  # noqa: F401
from bookwarden.privacy.requests import models as privacy_requests  # noqa: F401
from bookwarden.privacy.retention import models as retention  # noqa: F401
from bookwarden.privacy.subjects import models as subject_rights  # noqa: F401
from bookwarden.tenancy import models as tenancy  # noqa: F401
