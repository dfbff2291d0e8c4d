"""`bookwarden monitor rootcheck`: the rootkit checks on this machine, now."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bookwarden.console import Verdict, command, connect, console_principal, err, fail, out
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.monitor.cli import monitor_app
from bookwarden.monitor.rootcheck import service

groups = ()  # the command joins `bookwarden monitor` (monitor/cli.py)


@command(monitor_app, "rootcheck", Permission.PLATFORM_FIM_READ)
def monitor_rootcheck(
    fmt: Annotated[
        str, typer.Option("--format", help="table or json (one JSON line per finding, then a summary)")
    ] = "table",
) -> None:
    """Hidden processes and ports, known rootkit files, SUID/SGID files not in the baseline, world-writable
    files in protected paths, promiscuous interfaces. Exit 1 when anything was found."""
    if fmt not in ("table", "json"):
        raise fail(f"--format: {fmt!r} is none of table, json")
    with err.status("rootcheck: probing processes, ports and files"):
        result = service.rootcheck(connect(), console_principal(), get_settings())
    for finding in result.findings:
        if fmt == "json":
            print(json.dumps(finding.as_json()))
        else:
            out.print(f"{finding.action:<36} {finding.detail}", markup=False, highlight=False)
    if fmt == "json":
        print(json.dumps({"summary": True, **result.summary()}))
    else:
        err.print(f"{len(result.findings)} findings; seconds per check: {result.seconds}")
    if result.findings:
        raise Verdict(1)
