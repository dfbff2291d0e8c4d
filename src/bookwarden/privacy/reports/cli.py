"""`bookwarden reports`: anonymized publisher reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bookwarden.console import Grant, choice, command, connect, console_principal, err, fail, institution_id, out
from bookwarden.core.permissions import Permission
from bookwarden.core.purposes import SharingPath
from bookwarden.db.session import tenant_session
from bookwarden.privacy.reports import catalogue
from bookwarden.privacy.reports import service as publisher_reports

reports_app = typer.Typer(
    name="reports",
    help="Anonymized publisher reports: the catalogue, k and noise, budgets, releases.",
    no_args_is_help=True,
)
groups = (reports_app,)


# -- publisher reports -----------------------------------------------------------------------


@command(reports_app, "catalogue-import", Permission.REPORTS_CATALOGUE_MANAGE)
def reports_catalogue_import(
    file: Annotated[Path, typer.Argument(help="UTF-8 CSV with the header item_id,title,publisher")],
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    replace: Annotated[bool, typer.Option(help="also remove the items the file does not list")] = False,
    grant: Grant = None,
) -> None:
    """Load titles and publishers of items: every line checked first, nothing written unless all pass."""
    try:
        content = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None
    with tenant_session(connect(), institution_id(tenant)) as session:
        summary = catalogue.load(session, console_principal(), content, replace=replace)
    err.print(
        f"{summary.items:,} items: {summary.added:,} added, {summary.changed:,} changed, "
        f"{summary.unchanged:,} unchanged, {summary.removed:,} removed"
    )


@command(reports_app, "policy", Permission.REPORTS_POLICY_MANAGE)
def reports_policy(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    k: Annotated[int | None, typer.Option(help="suppress cells under k patrons (10 at least)")] = None,
    noise: Annotated[bool | None, typer.Option("--noise/--no-noise", help="add differential-privacy noise")] = None,
    epsilon_per_report: Annotated[float | None, typer.Option(help="epsilon a report spends by default")] = None,
    publisher_budget: Annotated[float | None, typer.Option(help="default total epsilon per publisher")] = None,
    max_cells_per_patron: Annotated[int | None, typer.Option(help="title-months a patron counts in")] = None,
    max_loans_per_cell: Annotated[int | None, typer.Option(help="loans of one patron counted per cell")] = None,
    grant: Grant = None,
) -> None:
    """Show an institution's rules for publisher reports, or change the ones given."""

    changes = {
        "k": k,
        "noise": noise,
        "epsilon_per_report": epsilon_per_report,
        "publisher_budget": publisher_budget,
        "max_cells_per_patron": max_cells_per_patron,
        "max_loans_per_cell": max_loans_per_cell,
    }
    with tenant_session(connect(), institution_id(tenant)) as session:
        if any(value is not None for value in changes.values()):
            policy = publisher_reports.set_policy(session, console_principal(), **changes)
        else:
            policy = publisher_reports.read_policy(session, console_principal())
    print(json.dumps(policy.as_dict(), indent=2))


@command(reports_app, "budget", Permission.REPORTS_POLICY_MANAGE)
def reports_budget(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    publisher: Annotated[str | None, typer.Option(help="the publisher whose budget to set")] = None,
    budget: Annotated[float | None, typer.Option(help="total epsilon the publisher may receive")] = None,
    grant: Grant = None,
) -> None:
    """List publishers' privacy budgets, or set one (--publisher and --budget)."""
    if (publisher is None) != (budget is None):
        raise fail("--publisher and --budget go together (neither: list the budgets)")
    with tenant_session(connect(), institution_id(tenant)) as session:
        if publisher is not None and budget is not None:
            rows = [publisher_reports.set_budget(session, console_principal(), publisher, budget)]
        else:
            rows = publisher_reports.budgets(session, console_principal())
        table = Table("publisher", "budget", "spent", "remaining", title="Privacy budgets (epsilon)")
        for row in rows:
            table.add_row(row.publisher, f"{row.budget:g}", f"{row.spent:g}", f"{row.budget - row.spent:g}")
    out.print(table)


@command(reports_app, "publishers", Permission.REPORTS_PUBLISHERS, shares=SharingPath.PUBLISHER_REPORT)
def reports_publishers(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    publisher: Annotated[str, typer.Option(help="the publisher, as the catalogue names it")],
    first_month: Annotated[str, typer.Option("--from", help="first month, YYYY-MM")],
    last_month: Annotated[str, typer.Option("--to", help="last month, YYYY-MM (ended)")],
    epsilon: Annotated[float | None, typer.Option(help="with noise on: epsilon to spend")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
    purpose: Annotated[
        str, typer.Option(help="what the report is for: patrons who object to it are counted nowhere")
    ] = publisher_reports.DEFAULT_PURPOSE,
    grant: Grant = None,
) -> None:
    """Release a publisher's anonymized usage report (cells under k patrons suppressed; patrons who object
    counted nowhere) and print it."""
    chosen = choice("--format", fmt, publisher_reports.ReportFormat)
    with tenant_session(connect(), institution_id(tenant)) as session:
        report = publisher_reports.release(
            session, console_principal(), publisher, first_month, last_month, epsilon=epsilon, purpose=purpose
        )
        body = publisher_reports.render(report, chosen)
    sys.stdout.write(body if body.endswith("\n") else body + "\n")


@command(reports_app, "list", Permission.REPORTS_PUBLISHERS)
def reports_list(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    publisher: Annotated[str | None, typer.Option(help="only this publisher's")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    grant: Grant = None,
) -> None:
    """Reports released, the latest first, with their k and epsilon."""

    if fmt not in ("table", "json"):
        raise fail(f"--format: {fmt!r} is none of table, json")
    with tenant_session(connect(), institution_id(tenant)) as session:
        found = [
            {
                "id": str(r.id),
                "publisher": r.publisher,
                "first_month": f"{r.first_month:%Y-%m}",
                "last_month": f"{r.last_month:%Y-%m}",
                "k": r.k,
                "epsilon": r.epsilon,
                "cells_published": r.cells_published,
                "released_at": r.released_at.isoformat(timespec="seconds"),
            }
            for r in publisher_reports.releases(session, console_principal(), publisher)
        ]
    if fmt == "json":
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "publisher", "months", "k", "epsilon", "cells", "released", title="Publisher reports")
    for r in found:
        epsilon = "-" if r["epsilon"] is None else f"{r['epsilon']:g}"
        table.add_row(r["id"], r["publisher"], f"{r['first_month']}..{r['last_month']}", str(r["k"]), epsilon,
                      str(r["cells_published"]), r["released_at"])  # fmt: skip
    out.print(table)
