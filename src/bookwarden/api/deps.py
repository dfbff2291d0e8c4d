"""The request pipeline: bearer token or session cookie -> principal -> (tenant context) -> route.

Operators sign in too (identity/operators/signin.py, cookie bw_operator_session): their session
resolves to the same platform principal an operator token does, through the same grant header.

API tokens (machines) and sign-in sessions (people in a browser) resolve to the same
`Principal` through `authenticate` here, so every route works with either unchanged; SAML
sign-on will end in a session too.

Cookie-authenticated requests that change something must also prove they come from this site
(`check_same_origin`). SameSite=Lax already keeps the cookie off most cross-site POSTs, but
not off requests from a sibling subdomain (another site of the same university is "same-site"),
nor in old browsers that ignore SameSite; the check costs a browser client one header.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from bookwarden.access.grants import service as grants
from bookwarden.audit import record as audit
from bookwarden.core.authorize import authorize
from bookwarden.core.errors import Forbidden, Unauthenticated
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import Database, TenantSession, tenant_session
from bookwarden.identity.operators import signin as operator_signin
from bookwarden.identity.sessions import COOKIE_NAME
from bookwarden.identity.signin import service as signin
from bookwarden.identity.tokens import service as tokens
from bookwarden.tenancy.service import ensure_active

bearer = HTTPBearer(
    auto_error=False,
    description="an API token: your own (POST /api/v1/auth/me/tokens), or a service token (bookwarden token create)",
)
session_cookie = APIKeyCookie(
    name=COOKIE_NAME, auto_error=False, description="a sign-in session (POST /api/v1/auth/login)"
)
operator_cookie = APIKeyCookie(
    name=operator_signin.COOKIE_NAME,
    auto_error=False,
    description="an operator's sign-in session (POST /api/v1/operator/auth/login)",
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GRANT_HEADER = "X-Operator-Grant"


def database(request: Request) -> Database:
    return request.app.state.db


def authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    cookie: str | None = Depends(session_cookie),
    operator: str | None = Depends(operator_cookie),
    db: Database = Depends(database),
) -> Principal:
    if credentials is None and cookie:
        check_same_origin(request)
        principal = signin.authenticate_session(db, cookie)
        return _authenticated(request, principal)
    if credentials is None and operator:
        # An operator signed in with password and second factor: the same principal an operator token gives.
        check_same_origin(request)
        principal = operator_signin.authenticate_session(db, operator)
        return _authenticated(request, _through_grant(db, request, principal))
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send an API token as: Authorization: Bearer <token>")
    principal = tokens.authenticate(db, credentials.credentials)
    if principal is not None:
        principal = _through_grant(db, request, principal)
    if principal is None:
        # One answer for unknown, expired and revoked tokens: nothing to learn from probing.
        raise Unauthenticated("the token is not valid (unknown, expired or revoked)")
    return _authenticated(request, principal)


def _through_grant(db: Database, request: Request, principal: Principal) -> Principal:
    if principal.is_operator and request.headers.get(GRANT_HEADER):
        # The one path from an operator into a tenant: an approved grant, current, issued to them.
        return grants.open_grant(db, principal, _grant_id(request.headers[GRANT_HEADER]))
    return principal


def _authenticated(request: Request, principal: Principal) -> Principal:
    request.state.principal = principal
    audit.current().principal = principal  # every audit event of this request names its actor
    return principal


def _grant_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise Forbidden(f"{GRANT_HEADER} must be the id of an approved operator grant") from None


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing request that may have been sent by another site's page.

    Passes when the request carries X-Requested-With (any value: a page on another site cannot
    add a custom header without a CORS preflight, and this API answers none), or when its Origin,
    or failing that its Referer, names the host the request was sent to. Reading requests pass:
    they change nothing (no route changes state on GET). Behind a proxy, the proxy must pass the
    Host header through unchanged, or browser clients must send X-Requested-With.
    """
    if request.method in SAFE_METHODS or request.headers.get("x-requested-with"):
        return
    host = request.headers.get("host", "").lower()
    # Origin when the browser sent one (a "null" origin names no host, so it fails); Referer otherwise.
    claimed = request.headers.get("origin") or request.headers.get("referer") or ""
    if host and urlsplit(claimed).netloc.lower() == host:
        return
    raise Forbidden(
        "a signed-in browser request that changes something must come from this site: send the header "
        "X-Requested-With (any value), or an Origin header naming this host"
    )


def requires(permission: Permission):
    """Dependency: the caller must hold `permission`. Every route declares exactly one."""

    def check(principal: Principal = Depends(authenticate)) -> Principal:
        authorize(principal, permission)
        return principal

    check.required_permission = permission  # read by the test that proves every route declares one
    return check


@contextmanager
def tenant_scope(db: Database, principal: Principal) -> Iterator[TenantSession]:
    """The principal's tenant context, refused when the tenant is suspended."""
    if principal.tenant_id is None:
        raise Forbidden("operator tokens reach no tenant data")
    with tenant_session(db, principal.tenant_id) as session:
        ensure_active(session, principal.tenant_id)
        yield session
