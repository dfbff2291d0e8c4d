"""`bookwarden fim`: scan the platform's files against the approved baseline; propose and approve baselines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from bookwarden.console import Verdict, command, connect, console_principal, err, fail, out, uuid_option, when
from bookwarden.core.config import get_settings
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session
from bookwarden.monitor.fim import service
from bookwarden.monitor.fim.scan import Finding

fim_app = typer.Typer(
    name="fim", help="File integrity: baselines and scans of the platform's files.", no_args_is_help=True
)
groups = (fim_app,)


@contextmanager
def _bar(what: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A progress bar (on stderr) over the bytes to hash: (advance, set total)."""
    with Progress(
        TextColumn(what),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bars:
        task = bars.add_task(what, total=None)
        yield (lambda n: bars.update(task, advance=n)), (lambda total: bars.update(task, total=total))


def _print_findings(findings: list[Finding], fmt: str) -> None:
    if fmt == "json":
        for finding in findings:
            print(json.dumps(finding.as_json()))
        return
    for finding in findings:
        changed = f"  [{', '.join(finding.changed)}]" if finding.changed else ""
        detail = "".join(
            f"  {name}: {finding.before.get(name)} -> {finding.after.get(name)}"
            for name in finding.changed
            if name in finding.before and name != "hash"
        )
        out.print(f"{finding.action:<22} {finding.path}{changed}{detail}", markup=False, highlight=False)


FormatOption = Annotated[
    str, typer.Option("--format", help="table or json (one JSON line per finding, then a summary)")
]


@command(fim_app, "scan", Permission.PLATFORM_FIM_READ)
def fim_scan(
    full: Annotated[
        bool, typer.Option("--full", help="re-hash every file, not only those whose metadata moved")
    ] = False,
    fmt: FormatOption = "table",
) -> None:
    """Compare the files with the approved baseline: added, removed and changed files and what changed.
    Exit 1 when anything was found (the baseline's own tampering included)."""
    if fmt not in ("table", "json"):
        raise fail(f"--format: {fmt!r} is none of table, json")
    with _bar("hashing") as (advance, total):
        outcome = service.scan(connect(), console_principal(), get_settings(), full=full, progress=advance, total=total)
    _print_findings(outcome.findings, fmt)
    summary = outcome.summary()
    if fmt == "json":
        print(json.dumps({"summary": True, **summary}))
    else:
        if outcome.tampered:
            out.print(f"[red]the baseline does not verify:[/red] {outcome.tampered}")
        err.print(
            f"{summary['files']} entries, {summary['hashed']} hashed ({'full' if outcome.full else 'fast path'}), "
            f"{summary['findings']} findings"
        )
    if outcome.findings:
        raise Verdict(1)


@command(fim_app, "baseline", Permission.PLATFORM_FIM_MANAGE)
def fim_baseline() -> None:
    """Propose a new baseline: every configured path hashed, stored and signed. Scans compare with it once
    another operator approves it (`bookwarden fim approve ID`); until then the current one stays."""
    with _bar("hashing") as (advance, total):
        baseline, result = service.propose(
            connect(), console_principal(), get_settings(), progress=advance, total=total
        )
    _print_findings(result.findings, "table")
    out.print(
        f"baseline {baseline.id} proposed: {baseline.entries} entries, {len(result.findings)} differences from the "
        "approved one; another holder of platform.fim.manage approves it with "
        f"`bookwarden fim approve {baseline.id}`"
    )


def _decide(baseline_id: str, approve: bool) -> None:
    chosen = uuid_option("BASELINE_ID", baseline_id)
    assert chosen is not None
    with platform_session(connect()) as session:
        baseline = service.decide(session, console_principal(), chosen, get_settings(), approve)
    out.print(f"baseline {baseline.id}: {baseline.status}")


@command(fim_app, "approve", Permission.PLATFORM_FIM_MANAGE)
def fim_approve(baseline_id: Annotated[str, typer.Argument(help="the proposed baseline")]) -> None:
    """Approve a baseline another operator proposed: its signature is checked again, and scans compare with it."""
    _decide(baseline_id, True)


@command(fim_app, "reject", Permission.PLATFORM_FIM_MANAGE)
def fim_reject(baseline_id: Annotated[str, typer.Argument(help="the proposed baseline")]) -> None:
    """Reject a baseline another operator proposed."""
    _decide(baseline_id, False)


@command(fim_app, "status", Permission.PLATFORM_FIM_READ)
def fim_status() -> None:
    """Baselines (proposed, active, decided) and the latest file-integrity and rootcheck runs."""
    with platform_session(connect()) as session:
        found, runs = service.baselines(session, console_principal())
    table = Table("baseline", "status", "entries", "algorithm", "signed", "proposed by", "decided by")
    for b in found:
        table.add_row(
            str(b.id), b.status, str(b.entries), b.algorithm, when(b.signed_at), str(b.proposed_by), str(b.decided_by)
        )
    out.print(table)
    table = Table("run", "check", "full", "started", "entries", "hashed", "findings")
    for r in runs:
        table.add_row(
            str(r.id),
            r.check_kind,
            "yes" if r.full else "",
            when(r.started_at),
            str(r.files),
            str(r.hashed),
            str(r.findings),
        )
    out.print(table)
