"""The platform's host checks for the security report and the live evidence: file-integrity scans against the
approved baseline and rootcheck runs (host_scans), and the baseline itself. Platform tables (a platform session).

A change is a distinct (action, path) a scan reported in the month: the hourly scans of a file changed once
report it every hour, and it is counted once. It is *unexpected* while the baseline the scan compared with is
still the approved one: a change an operator meant (an upgrade, a new configuration) is taken into a new
baseline that a second operator approves, after which it is expected."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookwarden.monitor.fim.models import FimBaseline, HostCheck, HostScan
from bookwarden.monitor.fim.service import active


def _last(session: Session, check: HostCheck, until: datetime | None = None) -> HostScan | None:
    query = select(HostScan).where(HostScan.check_kind == check, HostScan.finished_at.is_not(None))
    if until is not None:
        query = query.where(HostScan.finished_at < until)
    return session.scalars(query.order_by(HostScan.finished_at.desc()).limit(1)).first()


def monthly(session: Session, since: datetime, until: datetime) -> dict[str, object]:
    """{last_scan_at, files_watched, changes, unexpected_changes, rootcheck_runs, rootcheck_findings}."""
    last = _last(session, HostCheck.FIM, until)
    baseline = active(session)
    scans = session.scalars(
        select(HostScan).where(HostScan.finished_at >= since, HostScan.finished_at < until).order_by(HostScan.id)
    ).all()
    changes: set[tuple[str, str]] = set()
    unexpected: set[tuple[str, str]] = set()
    rootchecks = 0
    rootcheck_findings = 0
    for scan in scans:
        if scan.check_kind == HostCheck.ROOTCHECK:
            rootchecks += 1
            rootcheck_findings += scan.findings
            continue
        found = {(d.get("action", ""), d.get("path", "")) for d in scan.details}
        changes |= found
        if baseline is not None and scan.baseline_id == baseline.id:
            unexpected |= found
    return {
        "last_scan_at": last.finished_at.isoformat(timespec="seconds") if last else None,
        "files_watched": last.files if last else (baseline.entries if baseline else 0),
        "changes": len(changes),
        "unexpected_changes": len(unexpected),
        "rootcheck_runs": rootchecks,
        "rootcheck_findings": rootcheck_findings,
    }


def approved_baseline(session: Session) -> FimBaseline | None:
    """The baseline scans compare with (approved by a second operator), if any."""
    return active(session)


def last_scan(session: Session, check: HostCheck = HostCheck.FIM) -> HostScan | None:
    return _last(session, check)
