"""The request pipeline: bearer token -> principal -> (tenant context) -> route.

Sessions and SAML sign-on will resolve to the same `Principal`, through `authenticate`
here, so every route keeps working unchanged when they arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bookwarden.access.authorize import authorize
from bookwarden.access.permissions import Permission
from bookwarden.db.session import Database, TenantSession, tenant_session
from bookwarden.errors import Forbidden, Unauthenticated
from bookwarden.identity import tokens
from bookwarden.identity.principal import Principal
from bookwarden.tenancy.service import ensure_active

bearer = HTTPBearer(auto_error=False, description="an API token (bookwarden token create)")


def database(request: Request) -> Database:
    return request.app.state.db


def authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    db: Database = Depends(database),
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send an API token as: Authorization: Bearer <token>")
    principal = tokens.authenticate(db, credentials.credentials)
    if principal is None:
        # One answer for unknown, expired and revoked tokens: nothing to learn from probing.
        raise Unauthenticated("the token is not valid (unknown, expired or revoked)")
    request.state.principal = principal
    return principal


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
