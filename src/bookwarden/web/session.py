"""Who a page's request comes from: the same sign-in sessions, in the same cookies, as the JSON API.

A person signs in on a page (identity/signin/pages.py) through the same service the API's
POST /api/v1/auth/login calls, and gets the same server-side session (identity/sessions.py) in the
same cookie, `bw_session`; an operator's is `bw_operator_session` (identity/operators/signin.py).
A page and the API's routes therefore see one session: the WebAuthn page's script calls the API's
ceremony with the cookie the sign-in page set, and signing out anywhere ends it everywhere.

The cookies are HttpOnly, SameSite (Lax for an institution's session, so a link in a mail opens the
portal signed in; Strict for an operator's) and Secure whenever the site is reached over https: the
public URL says https, or the request came over it. Over plain http on 127.0.0.1 (`make run`, the
browser tests) a Secure cookie would not come back, so there it is not set Secure.

`signed_in` (any signed-in person) and `requires(permission)` are FastAPI dependencies, like the API's:
a page declares exactly one of them, or none when it is open (sign-in, landing, unsubscribe). An
operator acting inside an institution still needs an approved grant: `through_grant` opens it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import Depends, Request
from fastapi.responses import Response

from bookwarden.access.grants import service as grants
from bookwarden.audit import record as audit
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Forbidden, Unauthenticated
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import TenantSession, tenant_session
from bookwarden.identity.operators import signin as operator_signin
from bookwarden.identity.sessions import COOKIE_NAME
from bookwarden.identity.signin import service as signin
from bookwarden.tenancy.service import ensure_active

OPERATOR_COOKIE = operator_signin.COOKIE_NAME
_UNKNOWN = object()


def https(request: Request) -> bool:
    public = urlsplit(request.app.state.settings.public_url.strip()).scheme.lower()
    return request.url.scheme == "https" or public == "https"


def source_address(request: Request) -> str:
    """The peer as the server sees it (uvicorn believes X-Forwarded-For only from the named proxies)."""
    return request.client.host if request.client else "unknown"


def current(request: Request) -> Principal | None:
    """The signed-in person behind this request's cookies, or None (looked up once per request).

    A session still waiting for its second factor signs nobody in: it is None here too.
    """
    found = getattr(request.state, "web_principal", _UNKNOWN)
    if found is not _UNKNOWN:
        return found
    db = request.app.state.db
    principal = None
    for name, authenticate in ((COOKIE_NAME, signin.authenticate_session), (OPERATOR_COOKIE, _operator)):
        value = request.cookies.get(name)
        if value:
            try:
                principal = authenticate(db, value)
                break
            except Unauthenticated:
                continue
    request.state.web_principal = principal
    if principal is not None:
        request.state.principal = principal
        audit.current().principal = principal  # every audit event of this request names its actor
    return principal


def _operator(db, value: str) -> Principal:
    return operator_signin.authenticate_session(db, value)


def signed_in(request: Request) -> Principal:
    """Dependency: the signed-in person; a reader who is not is sent to the sign-in page (web/errors.py)."""
    principal = current(request)
    if principal is None:
        raise Unauthenticated("sign in to see this page")
    return principal


def requires(permission: Permission):
    """Dependency: the signed-in person must hold `permission` (403, shown as a page, otherwise)."""

    def check(principal: Principal = Depends(signed_in)) -> Principal:
        authorize(principal, permission)
        return principal

    check.required_permission = permission  # read by the permission table (tests/invariants)
    return check


def through_grant(request: Request, principal: Principal, grant_id: UUID) -> Principal:
    """An operator's principal inside the institution of their approved, current grant `grant_id`."""
    opened = grants.open_grant(request.app.state.db, principal, grant_id)
    audit.current().principal = opened
    return opened


@contextmanager
def tenant_scope(request: Request, principal: Principal) -> Iterator[TenantSession]:
    """The principal's institution's transaction (as api/deps.py `tenant_scope`): refused when suspended."""
    if principal.tenant_id is None:
        raise Forbidden("an operator reaches an institution's pages only through an approved grant")
    with tenant_session(request.app.state.db, principal.tenant_id) as session:
        ensure_active(session, principal.tenant_id)
        yield session


def set_session_cookie(request: Request, response: Response, token: str, *, operator: bool = False) -> None:
    name, same_site = (OPERATOR_COOKIE, "strict") if operator else (COOKIE_NAME, "lax")
    response.set_cookie(name, token, secure=https(request), httponly=True, samesite=same_site, path="/")


def forget_session_cookie(request: Request, response: Response, *, operator: bool = False) -> None:
    name, same_site = (OPERATOR_COOKIE, "strict") if operator else (COOKIE_NAME, "lax")
    response.delete_cookie(name, secure=https(request), httponly=True, samesite=same_site, path="/")
