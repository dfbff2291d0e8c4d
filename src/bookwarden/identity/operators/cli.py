"""`bookwarden operator`: operator accounts."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bookwarden.console import command, connect, err, out
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, Permission
from bookwarden.db.session import platform_session
from bookwarden.identity.operators import service as operator_accounts

operator_app = typer.Typer(
    name="operator",
    help="Operator accounts: platform staff who sign in with a password and an authenticator app.",
    no_args_is_help=True,
)
groups = (operator_app,)


# -- operator accounts ---------------------------------------------------------------------


def _operator_table(operators) -> Table:
    table = Table("id", "username", "role", "status", "created")
    for o in operators:
        table.add_row(str(o.id), o.username, o.role, o.status, o.created_at.isoformat(timespec="seconds"))
    return table


def _print_enrolment_link(enrolment) -> None:
    # The link is the account's only way in: printed once, to be handed to its holder in person or by a
    # channel the platform trusts (the platform has no mail of its own); stdout only, never a log.
    until = enrolment.link.expires_at.strftime("%H:%M UTC on %d %B %Y")
    err.print(
        f"enrolment link for {enrolment.account.username} ({enrolment.account.role}), works once until {until}; "
        "whoever opens it sets the password and the authenticator app:"
    )
    print(enrolment.url)


def _first_operator() -> bool:
    """No operator account exists yet: whoever runs the console may create the first (recorded by OS user)."""
    with platform_session(connect()) as session:
        return operator_accounts.none_yet(session)


@command(operator_app, "create", Permission.PLATFORM_OPERATORS_MANAGE, unmapped=_first_operator)
def operator_create(
    username: str,
    role: Annotated[str, typer.Option(help="operator_support, operator_ops, ciso or dpo")],
) -> None:
    """Create an operator account and print its one-time enrolment link (password and authenticator app).

    The platform's very first operator is created by whoever runs the console (nobody can be mapped yet),
    and must hold platform.operators.manage (the CISO's role) so that it can create the others."""
    db = connect()
    with platform_session(db) as session:
        if operator_accounts.none_yet(session) and not _manages_operators(role):
            raise InvalidInput(
                f"the first operator account creates the others, so its role must hold platform.operators.manage: "
                f'{", ".join(r for r in operator_accounts.ROLES if _manages_operators(r))}, not "{role}"'
            )
        enrolment = operator_accounts.create_operator(session, db.keyring, db.master, username, role)
    _print_enrolment_link(enrolment)


def _manages_operators(role: str) -> bool:
    return role in operator_accounts.ROLES and Permission.PLATFORM_OPERATORS_MANAGE in BUILTIN_PERMISSIONS[role]


@command(operator_app, "enrolment-link", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_enrolment_link(username: str) -> None:
    """A new enrolment link for an account that has not enrolled yet; the earlier link stops working."""
    db = connect()
    with platform_session(db) as session:
        enrolment = operator_accounts.issue_enrolment_link(session, db.master, username)
    _print_enrolment_link(enrolment)


@command(operator_app, "disable", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_disable(username: str) -> None:
    """Disable an operator account: no sign-in, and its sessions end at once."""
    with platform_session(connect()) as session:
        out.print(_operator_table([operator_accounts.disable(session, username)]))


@command(operator_app, "enable", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_enable(username: str) -> None:
    """Enable a disabled operator account again."""
    with platform_session(connect()) as session:
        out.print(_operator_table([operator_accounts.enable(session, username)]))


@command(operator_app, "list", Permission.PLATFORM_OPERATORS_MANAGE)
def operator_list() -> None:
    """List operator accounts, their roles and status."""
    with platform_session(connect()) as session:
        out.print(_operator_table(operator_accounts.list_operators(session)))
