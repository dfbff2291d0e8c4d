"""Alerts for the security report and the live evidence: how many were raised in a month, by severity and
rule; whether every alert's delivery went out; which host-check alerts wait unhandled. A platform session
(monitor_alerts is a platform table; an institution's numbers are the rows naming it)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bookwarden.jobs.models import Job, JobStatus
from bookwarden.monitor.alerts.delivery import MAIL_JOB, WEBHOOK_JOB
from bookwarden.monitor.alerts.models import AlertSeverity, AlertStatus, StoredAlert


def monthly(session: Session, institution_id: UUID | None, since: datetime, until: datetime) -> dict[str, object]:
    """Alerts first seen in [since, until): {total, by_severity, by_rule}; an institution's: those naming it."""
    query = (
        select(StoredAlert.severity, StoredAlert.rule, func.count())
        .where(StoredAlert.first_seen >= since, StoredAlert.first_seen < until)
        .group_by(StoredAlert.severity, StoredAlert.rule)
    )
    if institution_id is not None:
        query = query.where(StoredAlert.institution_id == institution_id)
    by_severity = {s.value: 0 for s in reversed(AlertSeverity)}  # critical first, as a reader scans them
    by_rule: dict[str, int] = {}
    for severity, rule, count in session.execute(query):
        by_severity[str(severity)] = by_severity.get(str(severity), 0) + count
        by_rule[rule] = by_rule.get(rule, 0) + count
    return {
        "total": sum(by_severity.values()),
        "by_severity": by_severity,
        "by_rule": dict(sorted(by_rule.items(), key=lambda item: (-item[1], item[0]))),
    }


def failed_deliveries(session: Session) -> list[str]:
    """Alert mails and webhooks that failed for good (every attempt used): one line each."""
    jobs = session.scalars(
        select(Job).where(Job.kind.in_([MAIL_JOB, WEBHOOK_JOB]), Job.status == JobStatus.FAILED).order_by(Job.id)
    )
    return [f"{job.kind} job {job.id} failed: {job.last_error or 'no reason kept'}" for job in jobs]


def waiting(session: Session, rules: Iterable[str], before: datetime) -> list[StoredAlert]:
    """Open (not acknowledged, not closed) alerts of `rules` first seen before `before`."""
    return list(
        session.scalars(
            select(StoredAlert)
            .where(
                StoredAlert.rule.in_(list(rules)),
                StoredAlert.status == AlertStatus.OPEN,
                StoredAlert.first_seen < before,
            )
            .order_by(StoredAlert.first_seen)
        )
    )
