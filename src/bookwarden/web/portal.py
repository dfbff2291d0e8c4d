"""The patron portal's frame: what every portal page shows around its own content.

Every portal page (library/pages.py, privacy/*/pages.py) declares `Depends(PATRON)` (the patron's
own permission, self.service), works inside `session.tenant_scope`, calls the same service the
API's `/me/...` route calls with the signed-in patron as actor, and renders with `render_portal`,
which adds the institution, the privacy notice in force and the cookie banner:

- the banner shows until this patron (from any browser) or this browser has chosen; until then only
  strictly necessary cookies are set (and the platform sets no other kind at all: the session, the
  CSRF secret and the cookie that remembers the choice itself);
- the choice is recorded as the API records it (privacy/consent/service.py `record_cookie_choice`,
  naming the notice version in force), by the banner's form (privacy/consent/pages.py).
"""

from __future__ import annotations

from fastapi.responses import HTMLResponse
from starlette.requests import Request

from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession
from bookwarden.identity.accounts import service as accounts
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.notices import service as notices
from bookwarden.tenancy.models import Tenant
from bookwarden.web.session import requires
from bookwarden.web.templates import NavLink, navigation, render

PATRON = requires(Permission.SELF_SERVICE)
# The portal's own pages, in the order its menu shows them.
SECTIONS = (
    ("My data", "/portal"),
    ("My requests", "/portal/requests"),
    ("My posts", "/portal/posts"),
    ("Communication", "/portal/preferences"),
    ("Consent history", "/portal/consents"),
    ("Complaints", "/portal/complaints"),
)


def is_patron(principal: Principal | None) -> bool:
    return principal is not None and Permission.SELF_SERVICE in principal.permissions


navigation(NavLink("My portal", "/portal", is_patron))


def render_portal(
    request: Request,
    session: TenantSession,
    principal: Principal,
    template: str,
    status_code: int = 200,
    done: str = "",
    **context,
) -> HTMLResponse:
    """`template` (extending "portal.html") with the portal's frame; `done`: what the last action did."""
    patron_id = accounts.own_patron_id(session, principal)
    tenant = session.get(Tenant, session.tenant_id)
    notice = notices.shown(session, notices.in_force(session))
    cookies = consent.cookie_choice(session, patron_id=patron_id, actor=principal)
    return render(
        request,
        template,
        status_code=status_code,
        institution=tenant,
        privacy_notice=notice,
        cookies=cookies,
        done=done,
        sections=SECTIONS,
        **context,
    )
