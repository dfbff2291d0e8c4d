"""Alerts stored, grouped, delivered, read and handled.

Grouping: one live (not closed) alert per rule and group. The group is the correlation's group-by values, or, for
a single detection, its source address; the institution the events concern is part of it. So:

- a correlation's opening alert and its final alert (same engine episode: same `first_seen`) are one stored alert,
  the final count replacing the opening's;
- the same rule and group matching again while the alert is open or acknowledged folds into it: the count grows,
  `last_seen` moves, no new row and no new mail;
- once closed, the next match opens a new alert.

A new alert queues its delivery as jobs in the same transaction (mail to the operators when its severity reaches
BOOKWARDEN_MONITOR_MAIL_SEVERITY; a signed webhook when BOOKWARDEN_MONITOR_WEBHOOK_URL is set): delivery never holds
up the engine, and the queue retries it.

`raise_alert(session, ...)` is for alerts that come from no rule (a failed restore drill, an audit verification
failure); it groups the same way.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.core.authorize import authorize
from bookwarden.core.canonical import canonical_json
from bookwarden.core.errors import Conflict, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal
from bookwarden.db.session import PLATFORM, TenantSession
from bookwarden.jobs.service import enqueue
from bookwarden.monitor.alerts.delivery import MAIL_JOB, WEBHOOK_JOB, DeliverySettings
from bookwarden.monitor.alerts.models import AlertSeverity, AlertStatus, StoredAlert
from bookwarden.monitor.engine import Alert

TARGET = "alert"
DEFAULT_SEVERITY = AlertSeverity.MEDIUM  # a rule that names no level


@dataclass(frozen=True)
class Recorded:
    """An alert as just stored: `created` when it is a new row, else a repeat folded into a live one."""

    alert: StoredAlert
    created: bool
    source: Alert | None = None  # the engine's alert it stored (None for one raised outside the rules)


def record_engine_alert(session: Session, alert: Alert, settings: DeliverySettings | None = None) -> Recorded:
    """Store an alert of the engine (platform session), folding it into the live alert of its rule and group."""
    group = {k: _plain(v) for k, v in alert.group.items()} or (
        {"source_address": alert.source_address} if alert.source_address else {}
    )
    stored = _fold(
        session,
        rule=alert.rule,
        title=alert.title,
        severity=_severity(alert.severity),
        kind=alert.kind,
        group=group,
        institution_id=_uuid(alert.tenant_id),
        source_address=alert.source_address,
        first_seen=alert.first_seen,
        last_seen=alert.last_seen,
        count=alert.count,
        # A correlation's episode is known by its first event; each detection match is an episode of its own.
        episode=alert.first_seen if alert.kind == "correlation" else None,
        summary=None,
        settings=settings,
    )
    return dataclasses.replace(stored, source=alert)


def raise_alert(
    session: Session,
    *,
    rule: str,
    title: str,
    severity: AlertSeverity | str,
    summary: str | None = None,
    group: dict[str, Any] | None = None,
    institution_id: uuid.UUID | None = None,
    source_address: str | None = None,
    at: datetime | None = None,
    settings: DeliverySettings | None = None,
) -> Recorded:
    """Raise an alert that comes from no rule (platform session; joins the caller's transaction).

    `rule` names the check (`backup.drill_failed`), `group` what repeats fold by (`{"backup_id": ...}`), `summary`
    says what happened in the platform's words: ids and step names, never a personal value.
    """
    moment = at or datetime.now(UTC)
    if not rule or len(rule) > 200:
        raise InvalidInput("an alert's rule must be a name of 1 to 200 characters")
    return _fold(
        session,
        rule=rule,
        title=title,
        severity=_severity(str(severity)),
        kind="raised",
        group={k: _plain(v) for k, v in (group or {}).items()},
        institution_id=institution_id,
        source_address=source_address,
        first_seen=moment,
        last_seen=moment,
        count=1,
        episode=None,
        summary=summary,
        settings=settings,
    )


def _fold(
    session: Session,
    *,
    rule: str,
    title: str,
    severity: AlertSeverity,
    kind: str,
    group: dict[str, Any],
    institution_id: uuid.UUID | None,
    source_address: str | None,
    first_seen: datetime,
    last_seen: datetime,
    count: int,
    episode: datetime | None,
    summary: str | None,
    settings: DeliverySettings | None,
) -> Recorded:
    group_key = canonical_json(
        {"group": group, "institution": str(institution_id) if institution_id else None}
    ).decode()
    now = datetime.now(UTC)
    values = {
        "id": uuid.uuid4(),
        "rule": rule,
        "title": title,
        "severity": severity.value,
        "kind": kind,
        "group_key": group_key,
        "grouped": group,
        "institution_id": institution_id,
        "source_address": source_address,
        "summary": summary,
        "first_seen": first_seen,
        "last_seen": last_seen,
        "count": count,
        "episode_first_seen": episode,
        "episode_base": 0,
        "status": AlertStatus.OPEN.value,
        "created_at": now,
        "updated_at": now,
    }
    # The partial unique index decides between two writers (the monitor and a raise_alert elsewhere) at once.
    inserted = session.execute(
        insert(StoredAlert)
        .values(**values)
        .on_conflict_do_nothing(
            # The partial index's predicate as a literal: with a bound parameter PostgreSQL cannot match the index
            # once a prepared statement's generic plan is used (psycopg prepares after a few runs on a connection).
            index_elements=["rule", "group_key"],
            index_where=StoredAlert.status != literal_column(f"'{AlertStatus.CLOSED.value}'"),
        )
        .returning(StoredAlert.id)
    ).scalar_one_or_none()
    if inserted is not None:
        stored = session.get(StoredAlert, inserted)
        _queue_delivery(session, stored, settings or DeliverySettings())
        return Recorded(stored, True)
    stored = session.scalars(
        select(StoredAlert)
        .where(
            StoredAlert.rule == rule,
            StoredAlert.group_key == group_key,
            StoredAlert.status != AlertStatus.CLOSED.value,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if episode is not None and stored.episode_first_seen == episode:
        stored.count = stored.episode_base + count  # the same episode, told again (opening, then final)
    else:
        stored.episode_base, stored.episode_first_seen = stored.count, episode
        stored.count = stored.count + count
    stored.first_seen = min(stored.first_seen, first_seen)
    stored.last_seen = max(stored.last_seen, last_seen)
    if severity.rank > AlertSeverity(stored.severity).rank:
        stored.severity = severity.value
    if source_address and stored.source_address is None:
        stored.source_address = source_address
    stored.updated_at = now
    session.flush()
    return Recorded(stored, False)


def _queue_delivery(session: Session, stored: StoredAlert, settings: DeliverySettings) -> None:
    if settings.mails(stored.severity):
        enqueue(session, MAIL_JOB, {"alert_id": str(stored.id)}, max_attempts=20)
    if settings.webhook_url:
        enqueue(session, WEBHOOK_JOB, {"alert_id": str(stored.id)}, max_attempts=20)


def _severity(level: str | None) -> AlertSeverity:
    try:
        return AlertSeverity((level or DEFAULT_SEVERITY.value).lower())
    except ValueError:
        raise InvalidInput(f"severity {level!r} is none of {', '.join(s.value for s in AlertSeverity)}") from None


def _uuid(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        found = uuid.UUID(str(value))
    except ValueError:
        return None
    return None if found == PLATFORM else found


def _plain(value: Any) -> Any:
    """A group value as canonical JSON can hold it (ids and times as text)."""
    return value if value is None or isinstance(value, str | int | bool) else str(value)


# -- reading and handling ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertFilter:
    status: AlertStatus | None = None
    severity_at_least: AlertSeverity | None = None
    rule: str | None = None
    limit: int = 100


def _query(found: AlertFilter):
    query = select(StoredAlert).order_by(StoredAlert.last_seen.desc(), StoredAlert.id).limit(found.limit)
    if found.status is not None:
        query = query.where(StoredAlert.status == found.status.value)
    if found.rule is not None:
        query = query.where(StoredAlert.rule == found.rule)
    if found.severity_at_least is not None:
        ranked = [s.value for s in AlertSeverity if s.rank >= found.severity_at_least.rank]
        query = query.where(StoredAlert.severity.in_(ranked))
    return query


def list_alerts(session: Session, actor: Principal, found: AlertFilter = AlertFilter()) -> list[StoredAlert]:
    """Every institution's alerts and the platform's (operators; platform session)."""
    authorize(actor, Permission.PLATFORM_ALERTS_READ)
    alerts = list(session.scalars(_query(found)))
    audit.record(session, Action.ALERT_LISTED, details={"count": len(alerts)}, actor=actor)
    return alerts


def get_alert(session: Session, actor: Principal, alert_id: uuid.UUID) -> StoredAlert:
    authorize(actor, Permission.PLATFORM_ALERTS_READ)
    stored = _get(session, alert_id)
    audit.record(session, Action.ALERT_VIEWED, (TARGET, stored.id), actor=actor)
    return stored


def list_for_institution(session: TenantSession, actor: Principal, found: AlertFilter = AlertFilter()) -> list:
    """The alerts concerning the institution in context (row-level security shows it no other)."""
    authorize(actor, Permission.ALERTS_READ)
    query = _query(found).where(StoredAlert.institution_id == session.tenant_id)
    alerts = list(session.scalars(query))
    audit.record(session, Action.ALERT_LISTED, details={"count": len(alerts)}, actor=actor)
    return alerts


def get_for_institution(session: TenantSession, actor: Principal, alert_id: uuid.UUID) -> StoredAlert:
    authorize(actor, Permission.ALERTS_READ)
    stored = session.scalars(
        select(StoredAlert).where(StoredAlert.id == alert_id, StoredAlert.institution_id == session.tenant_id)
    ).first()
    if stored is None:  # another institution's alert answers as one that does not exist
        raise NotFound(f"no alert {alert_id}")
    audit.record(session, Action.ALERT_VIEWED, (TARGET, stored.id), actor=actor)
    return stored


def acknowledge(session: Session, actor: Principal, alert_id: uuid.UUID) -> StoredAlert:
    """Someone is on it: the alert stays live (repeats fold into it) until closed."""
    authorize(actor, Permission.PLATFORM_ALERTS_MANAGE)
    stored = _get(session, alert_id, lock=True)
    if stored.status != AlertStatus.OPEN:
        raise Conflict(f"alert {alert_id} is {stored.status}; only an open alert is acknowledged")
    stored.status = AlertStatus.ACKNOWLEDGED.value
    stored.acknowledged_at, stored.acknowledged_by = datetime.now(UTC), actor.person or actor.id
    stored.updated_at = stored.acknowledged_at
    audit.record(session, Action.ALERT_ACKNOWLEDGED, (TARGET, stored.id), details={"rule": stored.rule}, actor=actor)
    return stored


def close(session: Session, actor: Principal, alert_id: uuid.UUID) -> StoredAlert:
    """Done: the next match of the rule and group opens a new alert."""
    authorize(actor, Permission.PLATFORM_ALERTS_MANAGE)
    stored = _get(session, alert_id, lock=True)
    if stored.status == AlertStatus.CLOSED:
        raise Conflict(f"alert {alert_id} is closed already")
    stored.status = AlertStatus.CLOSED.value
    stored.closed_at, stored.closed_by = datetime.now(UTC), actor.person or actor.id
    stored.updated_at = stored.closed_at
    audit.record(
        session,
        Action.ALERT_CLOSED,
        (TARGET, stored.id),
        details={"rule": stored.rule, "count": stored.count},
        actor=actor,
    )
    return stored


def _get(session: Session, alert_id: uuid.UUID, lock: bool = False) -> StoredAlert:
    query = select(StoredAlert).where(StoredAlert.id == alert_id)
    if lock:
        query = query.with_for_update()
    stored = session.scalars(query).first()
    if stored is None:
        raise NotFound(f"no alert {alert_id}")
    return stored


def as_json(stored: StoredAlert) -> dict[str, Any]:
    """What mail, webhooks and the console show of an alert."""
    return {
        "id": str(stored.id),
        "rule": stored.rule,
        "title": stored.title,
        "severity": stored.severity,
        "kind": stored.kind,
        "status": stored.status,
        "group": stored.grouped,
        "institution_id": str(stored.institution_id) if stored.institution_id else None,
        "source_address": stored.source_address,
        "summary": stored.summary,
        "first_seen": stored.first_seen.isoformat(),
        "last_seen": stored.last_seen.isoformat(),
        "count": stored.count,
    }
