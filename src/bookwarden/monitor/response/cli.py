"""`bookwarden monitor blocks | block | unblock`: active response at the console (commands of the monitor group)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from bookwarden.console import command, connect, console_principal, fail, out, when
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session
from bookwarden.monitor.cli import monitor_app
from bookwarden.monitor.response import blocks
from bookwarden.monitor.response.jails import allowlist

groups = ()  # the commands join `bookwarden monitor` (monitor/cli.py)


@command(monitor_app, "blocks", Permission.PLATFORM_BLOCKS_READ)
def monitor_blocks(fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Active blocks of source addresses, soonest to end first (json: one object per line)."""
    if fmt not in ("table", "json"):
        raise fail(f"--format: {fmt!r} is none of table, json")
    with platform_session(connect()) as session:
        views = blocks.list_active(session, console_principal())
    if fmt == "json":
        for view in views:
            print(json.dumps(view.as_json()))
        return
    table = Table("id", "network", "rule", "jail", "offence", "created", "expires", "by", "reason")
    for v in views:
        table.add_row(
            str(v.id), v.network, v.rule, v.jail or "-", str(v.offence), when(v.created_at), when(v.expires_at),
            v.created_by_kind, v.reason or "",
        )  # fmt: skip
    out.print(table)


@command(monitor_app, "block", Permission.PLATFORM_BLOCKS_MANAGE)
def monitor_block(
    address: Annotated[str, typer.Argument(help="an address (203.0.113.5, 2001:db8::1) or network (203.0.113.0/24)")],
    minutes: Annotated[int, typer.Option(min=1, max=525_600, help="how long the block lasts")] = 60,
    reason: Annotated[str | None, typer.Option(help="why, for whoever reads the list")] = None,
) -> None:
    """Block an address or network by hand; every HTTP process refuses it within about a second."""
    # A refusal (malformed or allowlisted address) is a BookwardenError: the root prints it, exit code 2.
    with platform_session(connect()) as session:
        row = blocks.block(session, console_principal(), address, timedelta(minutes=minutes), allowlist(), reason)
        view = blocks.BlockView.of(row)
    out.print(f"blocked {view.network} until {when(view.expires_at)} (block {view.id})")


@command(monitor_app, "unblock", Permission.PLATFORM_BLOCKS_MANAGE)
def monitor_unblock(
    address: Annotated[str, typer.Argument(help="the address or network: every active block covering it ends")],
) -> None:
    """End every active block covering ADDRESS before its time (the hook is told to unblock too)."""
    with platform_session(connect()) as session:
        ended = blocks.unblock_address(session, console_principal(), address)
    for view in ended:
        out.print(f"unblocked {view.network} (block {view.id}, rule {view.rule})")
