"""`bookwarden token`: service tokens minted at the console; every token listed and revoked.

The console mints *service* tokens only (no owner: a machine's, identity/tokens/service.py). A person's
own token is minted by that person, signed in: an institution's account at POST /api/v1/auth/me/tokens,
an operator, with their second factor, at POST /api/v1/operator/auth/me/tokens.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from bookwarden.access.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole, Permission
from bookwarden.access.power import power_class
from bookwarden.access.principal import permissions_from
from bookwarden.console import command, connect, console_principal, fail, institution_id, out, uuid_option, when
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.tokens import service as tokens

token_app = typer.Typer(
    name="token", help="API tokens: service tokens minted, every token listed and revoked.", no_args_is_help=True
)
groups = (token_app,)

LIST_WIDTH = 260
Tenant = Annotated[str | None, typer.Option(help="institution id or slug")]
Operator = Annotated[bool, typer.Option("--operator", help="platform operator tokens instead")]


def _one_of(tenant: str | None, operator: bool) -> None:
    if operator == (tenant is not None):
        raise fail("give either --tenant or --operator")


@command(token_app, "create", Permission.PLATFORM_TOKENS_ISSUE)
def token_create(
    tenant: Tenant = None,
    operator: Operator = False,
    name: Annotated[str, typer.Option(help="what the token is for")] = "api",
    permission: Annotated[list[str] | None, typer.Option(help="repeatable; see --role for bundles")] = None,
    role: Annotated[str | None, typer.Option(help="give the token a built-in role's permissions")] = None,
    days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=366,
            help="lifetime in days; at most 366 (ordinary permissions), 30 (administrative), 7 (operator "
            "tokens); default 90 or that maximum",
        ),
    ] = None,
) -> None:
    """Create a service token (no owner, for a machine); it is printed once and stored only as a hash.

    Default permissions: read and write the hosted library data (tenant), manage tenants (operator).
    """
    _one_of(tenant, operator)
    try:
        chosen = {Permission(p) for p in permission or []} | set(BUILTIN_PERMISSIONS[BuiltinRole(role)] if role else ())
    except ValueError as exc:
        permissions = ", ".join(p.value for p in Permission)
        raise fail(f"{exc}; permissions: {permissions}; roles: {', '.join(r.value for r in BuiltinRole)}") from None
    if role and operator:
        chosen -= tokens.NEVER_IN_A_TOKEN  # the CISO's bundle, without what no token holds
    chosen = chosen or ({Permission.PLATFORM_TENANTS_MANAGE} if operator else LIBRARY_READ | LIBRARY_WRITE)
    lifetime = timedelta(days=days) if days else tokens.default_lifetime(chosen)
    db = connect()
    if operator:
        with platform_session(db) as session:
            _, secret = tokens.issue_operator_token(session, name, sorted(chosen), lifetime)
    else:
        tenant_id = institution_id(tenant)
        with tenant_session(db, tenant_id) as session:
            _, secret = tokens.issue_api_token(session, name, sorted(chosen), lifetime)
    print(secret)


@command(token_app, "list", Permission.PLATFORM_TOKENS_ISSUE)
def token_list(tenant: Tenant = None, operator: Operator = False) -> None:
    """List an institution's API tokens, or the operator tokens: owner, permissions, dates, last use."""
    _one_of(tenant, operator)
    db = connect()
    if operator:
        with platform_session(db) as session:
            table = _table(tokens.list_operator_tokens(session))
    else:
        with tenant_session(db, institution_id(tenant)) as session:
            table = _table(tokens.list_api_tokens(session, console_principal()))
    # Whole ids (what `token revoke` takes): a pipe gets the width the table needs, not 80 columns.
    (out if out.is_terminal else Console(width=LIST_WIDTH)).print(table)


@command(token_app, "revoke", Permission.PLATFORM_TOKENS_ISSUE)
def token_revoke(token_id: str, tenant: Tenant = None, operator: Operator = False) -> None:
    """Revoke a token at once (an institution's: its security contacts are told)."""
    _one_of(tenant, operator)
    chosen = uuid_option("TOKEN_ID", token_id)
    db = connect()
    if operator:
        with platform_session(db) as session:
            revoked = tokens.revoke_operator_token(session, chosen)
    else:
        with tenant_session(db, institution_id(tenant)) as session:
            revoked = tokens.revoke_api_token(session, chosen)
    if not revoked:
        raise fail(f"no live token {token_id} there: unknown, or revoked already")
    out.print(f"token {token_id} revoked")


def _table(rows) -> Table:
    whole = {"no_wrap": True, "min_width": 36}  # ids are copied from here, never cut
    table = Table(
        Column("id", **whole), "name", Column("owner", **whole), "class", "permissions", "created", "expires",
        "last used", "status",
    )  # fmt: skip
    for row in rows:
        table.add_row(
            str(row.id),
            row.name,
            str(row.owner_id) if row.owner_id else "(service)",
            power_class(permissions_from(row.scopes)).value,
            ", ".join(row.scopes),
            when(row.created_at),
            when(row.expires_at),
            when(row.last_used_at),
            tokens.status_of(row).value,
        )
    return table
