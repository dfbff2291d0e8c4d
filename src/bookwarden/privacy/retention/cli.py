"""`bookwarden retention`: periods, the purge preview and run reports."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bookwarden.console import Grant, choice, command, connect, console_principal, err, fail, out, tenant_ids, when
from bookwarden.core.permissions import Permission
from bookwarden.db.session import tenant_session
from bookwarden.privacy.retention import service as retention
from bookwarden.privacy.retention.models import RetentionCategory

retention_app = typer.Typer(
    name="retention", help="Retention: periods, the purge preview and run reports.", no_args_is_help=True
)
groups = (retention_app,)


# -- retention -------------------------------------------------------------------------------


@command(retention_app, "preview", Permission.PRIVACY_RETENTION_MANAGE)
def retention_preview(tenant: Annotated[str, typer.Option(help="institution id or slug")], grant: Grant = None) -> None:
    """What the next purge would remove in an institution, per category: counts, the oldest date, and what
    legal holds keep (the purge's own selection)."""
    table = Table("institution", "category", "keep days", "cutoff", "due", "held", "oldest due")
    (tenant_id,) = tenant_ids(tenant)
    with tenant_session(connect(), tenant_id) as session:
        for line in retention.preview(session, console_principal()):
            days = "until deleted" if line.keep_days is None else str(line.keep_days)
            table.add_row(str(tenant_id), line.category.value, days, when(line.cutoff), f"{line.due:,}",
                          f"{line.held:,}", when(line.oldest))  # fmt: skip
    out.print(table)


@command(retention_app, "policies", Permission.PRIVACY_RETENTION_MANAGE)
def retention_policies(
    tenant: Annotated[str, typer.Option(help="institution id or slug")], grant: Grant = None
) -> None:
    """An institution's period per category: what applies, its source, the default and the bounds."""
    table = Table("category", "keep days", "source", "default", "bounds")
    (tenant_id,) = tenant_ids(tenant)
    with tenant_session(connect(), tenant_id) as session:
        for period in retention.view_periods(session, console_principal()):
            bounds = f"{period.least_days}-{period.most_days}" + (" or until deleted" if period.forever_allowed else "")
            table.add_row(period.category.value, str(period.keep_days or "until deleted"), period.source,
                          str(period.default_days or "until deleted"), bounds)  # fmt: skip
    out.print(table)


@command(retention_app, "set", Permission.PRIVACY_RETENTION_MANAGE)
def retention_set(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    category: Annotated[str, typer.Option(help="loan_history, searches, posts, inactive_patrons, exports...")],
    days: Annotated[int | None, typer.Option(min=1, help="keep-for period in days")] = None,
    forever: Annotated[bool, typer.Option(help="keep until deleted (posts only)")] = False,
    grant: Grant = None,
) -> None:
    """Ask for a new period: an approval request the institution's second officer approves
    (POST /api/v1/approvals/{id}/approve); nothing changes until then."""
    chosen = choice("--category", category, RetentionCategory)
    if (days is None) == (not forever):
        raise fail("give either --days N or --forever")
    (tenant_id,) = tenant_ids(tenant)
    with tenant_session(connect(), tenant_id) as session:
        asked = retention.ask_change(session, console_principal(), chosen, None if forever else days)
    out.print(f"approval request {asked.id}: waiting for a second holder of privacy.retention.manage")


@command(retention_app, "run", Permission.PLATFORM_SERVICES_RUN)
def retention_run(
    tenant: Annotated[str | None, typer.Option(help="institution id or slug; default: every institution")] = None,
) -> None:
    """Purge now what is past its period (as the daily job does, a platform duty: no grant); resumes an
    unfinished run."""
    db = connect()
    for tenant_id in tenant_ids(tenant):
        run_id = retention.run_purge(db, tenant_id, triggered_by="console")
        err.print(f"{tenant_id}: run {run_id} completed")


@command(retention_app, "runs", Permission.PRIVACY_RETENTION_MANAGE)
def retention_runs(
    tenant: Annotated[str, typer.Option(help="institution id or slug")],
    limit: Annotated[int, typer.Option(min=1, max=500, help="how many runs, newest first")] = 10,
    grant: Grant = None,
) -> None:
    """Purge run reports: per category what was removed, kept by a legal hold, or failed."""
    table = Table("run", "status", "as of", "category", "removed", "held", "errors")
    (tenant_id,) = tenant_ids(tenant)
    with tenant_session(connect(), tenant_id) as session:
        for run in retention.list_runs(session, console_principal(), limit=limit):
            for line in run.categories:
                table.add_row(str(run.id), run.status.value, when(run.as_of), line.category.value,
                              f"{line.removed:,}", f"{line.held:,}", f"{line.errors:,}")  # fmt: skip
    out.print(table)
