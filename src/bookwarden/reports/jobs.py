"""The reports' duties: each month, last month's security report mailed to each institution's security
contacts and the platform's to management; and the management mail itself (platform mail, no outbox).

The monthly job runs daily and mails a report only once: the trail of each scope is its record (a
`security_report.mailed` event of the schedule for that month), so a missed day or a restart neither skips
nor repeats a month.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from bookwarden.audit import tally
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.config import get_settings
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.jobs.service import handler, schedule
from bookwarden.notify.delivery import send_to_operators
from bookwarden.notify.service import render
from bookwarden.reports import security
from bookwarden.reports.controls import MONTHLY_REPORT_JOB
from bookwarden.reports.registry import Month, Scope
from bookwarden.reports.sections import institutions

log = structlog.get_logger()
SCHEDULED = "schedule"


def mail_last_month(db: Database, now: datetime | None = None) -> list[Scope]:
    """Mail last month's report to every scope not yet mailed it this month; the scopes mailed."""
    now = now or datetime.now(UTC)
    month = Month.of(now).previous()
    this_month = Month.of(now).start
    scopes = [Scope(None, security.PLATFORM)] + [Scope(t.id, t.name) for t in institutions(db, Scope(None, ""))]
    mailed = []
    for scope in scopes:
        with tenant_session(db, scope.tenant_id or PLATFORM_CHAIN) as session:
            done = tally.recorded(
                session, Action.SECURITY_REPORT_MAILED, this_month, {"month": str(month), "trigger": SCHEDULED}
            )
        if done:
            continue
        report = security.build(db, scope, month, now)
        security.queue_report_mail(db, scope, month, report, SYSTEM, SCHEDULED)
        mailed.append(scope)
    return mailed


@handler(MONTHLY_REPORT_JOB)
def _monthly(db: Database, payload: dict[str, Any]) -> None:
    log.info("reports.monthly", mailed=len(mail_last_month(db)))


@handler(security.MAIL_MANAGEMENT_JOB)
def _mail_management(db: Database, payload: dict[str, Any]) -> None:
    """The platform's report to management, straight over SMTP (retried by the queue)."""
    addresses = get_settings().management_report_addresses
    if not addresses:
        log.warning("reports.no_management_address", month=payload["month"])
        return
    month = Month.parse(payload["month"])
    report = security.build(db, Scope(None, security.PLATFORM), month)
    body = render("security_report.txt", security.mail_context(report))
    send_to_operators(addresses, f"Bookwarden: platform security report for {month}", body, f"report-{month}")


def declare_schedules(db: Database) -> None:
    with platform_session(db) as session:
        schedule(session, MONTHLY_REPORT_JOB, MONTHLY_REPORT_JOB, timedelta(days=1))
