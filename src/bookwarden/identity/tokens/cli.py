"""`bookwarden token`: platform service tokens minted at the console; every token listed and revoked.

The console mints the platform's *service* tokens only (no owner: a machine's, identity/tokens/service.py),
with platform permissions its operator holds. It mints no institution's token: a person's own token is
minted by that person, signed in: an institution's account at POST /api/v1/auth/me/tokens, an operator,
with their second factor, at POST /api/v1/operator/auth/me/tokens. Listing and revoking an institution's
tokens shows credentials' names and dates and takes power away, never data: no grant is needed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from bookwarden.access.power import power_class
from bookwarden.console import command, connect, console_principal, fail, institution_id, out, uuid_option, when
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import PLATFORM_PERMISSIONS, Permission
from bookwarden.core.principal import permissions_from
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
    name: Annotated[str, typer.Option(help="what the token is for")] = "api",
    permission: Annotated[list[str] | None, typer.Option(help="repeatable; default platform.tenants.manage")] = None,
    days: Annotated[
        int | None, typer.Option(min=1, max=7, help="lifetime in days; at most 7 (operator tokens), the default")
    ] = None,
) -> None:
    """Create a platform service token (no owner, for a machine of the platform's: provisioning, monitoring);
    it is printed once and stored only as a hash. It carries platform permissions the operator running the
    command holds, never more, so it reaches no institution's data (that takes a grant, asked by a person).

    An institution's tokens are minted by their owners, signed in (POST /api/v1/auth/me/tokens), never here.
    """
    try:
        chosen = {Permission(p) for p in permission or []} or {Permission.PLATFORM_TENANTS_MANAGE}
    except ValueError as exc:
        raise fail(f"{exc}; platform permissions: {', '.join(sorted(p.value for p in PLATFORM_PERMISSIONS))}") from None
    beyond = chosen - console_principal().permissions
    if beyond:
        raise Forbidden(
            f"a service token carries only what its maker holds: you do not hold {', '.join(sorted(beyond))}",
            permission=sorted(beyond)[0],
        )
    lifetime = timedelta(days=days) if days else tokens.default_lifetime(chosen)
    with platform_session(connect()) as session:
        _, secret = tokens.issue_operator_token(session, name, sorted(chosen), lifetime)
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
