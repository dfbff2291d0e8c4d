"""`bookwarden token`: API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from bookwarden.access.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole, Permission
from bookwarden.console import command, connect, fail, institution_id
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import tokens

token_app = typer.Typer(name="token", help="API tokens.", no_args_is_help=True)
groups = (token_app,)


# -- tokens --------------------------------------------------------------------------------


@command(token_app, "create", Permission.PLATFORM_TOKENS_ISSUE)
def token_create(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="a platform operator token instead")] = False,
    name: Annotated[str, typer.Option(help="what the token is for")] = "api",
    permission: Annotated[list[str] | None, typer.Option(help="repeatable; see --role for bundles")] = None,
    role: Annotated[str | None, typer.Option(help="give the token a built-in role's permissions")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="lifetime in days")] = 90,
) -> None:
    """Create an API token; it is printed once and stored only as a hash.

    Default permissions: read and write the hosted library data (tenant), manage tenants (operator).
    """
    if operator == (tenant is not None):
        raise fail("give either --tenant or --operator")
    try:
        chosen = {Permission(p) for p in permission or []} | set(BUILTIN_PERMISSIONS[BuiltinRole(role)] if role else ())
    except ValueError as exc:
        permissions = ", ".join(p.value for p in Permission)
        raise fail(f"{exc}; permissions: {permissions}; roles: {', '.join(r.value for r in BuiltinRole)}") from None
    db = connect()
    if operator:
        with platform_session(db) as session:
            _, secret = tokens.issue_operator_token(
                session, name, sorted(chosen or {Permission.PLATFORM_TENANTS_MANAGE}), timedelta(days=days)
            )
    else:
        tenant_id = institution_id(tenant)
        with tenant_session(db, tenant_id) as session:
            _, secret = tokens.issue_api_token(
                session, name, sorted(chosen or LIBRARY_READ | LIBRARY_WRITE), timedelta(days=days)
            )
    print(secret)
