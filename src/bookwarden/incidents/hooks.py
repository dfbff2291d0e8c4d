"""Where the platform's own findings open incidents: the registries of the lower areas, filled here.

- a restore drill that fails (backup/drill.py `on_failure`), in the drill's own transaction;
- an audit chain that fails verification (audit/verify.py `on_tampered`), in a transaction of its own;
- a report of suspected unauthorised access to an account (privacy/concerns `register_incident_opener`): the
  report's transaction is the institution's, which cannot write the platform's tables, so the incident's id is
  chosen there and a job opens it at once (incidents/jobs.py); the report keeps that id.

A storm of account lockouts is found by a job (incidents/jobs.py). A new critical monitoring alert opens one
(`alert_stored`, from the alerts' subscribers); other alerts are promoted by a handler (`incident promote`).
"""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy.orm import Session

from bookwarden.audit.verify import ChainReport, on_tampered
from bookwarden.backup.drill import on_failure
from bookwarden.backup.models import BackupDrill
from bookwarden.core.principal import SYSTEM
from bookwarden.db.session import PLATFORM, Database, TenantSession, platform_session
from bookwarden.incidents import service
from bookwarden.incidents.models import IncidentCategory, IncidentSource, Severity
from bookwarden.jobs.service import enqueue
from bookwarden.monitor.alerts.service import Recorded
from bookwarden.monitor.alerts.subscribers import on_alert
from bookwarden.privacy.concerns.models import Concern, ConcernKind
from bookwarden.privacy.concerns.service import register_incident_opener

REPORT_JOB = "incidents.open_from_report"
# Critical rules whose source opens its incident itself (above): promoting their alert too would open a second.
OPENED_AT_SOURCE = frozenset({"platform_audit_verification_failed", "platform_backup_drill_failed"})


@on_failure
def drill_failed(session: Session, drill: BackupDrill) -> None:
    service.open_automatic(
        session,
        IncidentSource.RESTORE_DRILL,
        title="A restore drill failed",
        summary=f"Restore drill {drill.id} of backup {drill.backup_id} failed: {drill.failure or 'see its steps'}"[
            : service.MAX_TEXT
        ],
        severity=Severity.HIGH,
        category=IncidentCategory.AVAILABILITY,
        source_ref=str(drill.id),
        source_key="restore_drill",
    )


@on_tampered
def chain_tampered(db: Database, chain: UUID, report: ChainReport) -> None:
    finding = report.finding
    where = f"at seq {finding.seq}" if finding is not None and finding.seq is not None else "at its start"
    with platform_session(db) as session:
        service.open_automatic(
            session,
            IncidentSource.AUDIT_VERIFY,
            title="An audit chain failed verification",
            summary=f"The audit chain {chain} failed verification {where}: {finding or 'see audit verify'}"[
                : service.MAX_TEXT
            ],
            severity=Severity.CRITICAL,
            category=IncidentCategory.INTEGRITY,
            source_ref=str(chain),
            source_key=str(chain),
            institutions=[] if chain == PLATFORM else [chain],
        )


def report_received(session: TenantSession, concern: Concern) -> UUID | None:
    """A report of unauthorised access opens an incident (its id chosen now, kept on the report); a report that
    a child's data is held is the institution's privacy matter, not a security incident: it opens none."""
    if concern.kind != ConcernKind.UNAUTHORISED_ACCESS.value:
        return None
    incident_id = uuid4()
    payload = {"incident_id": str(incident_id), "tenant_id": str(session.tenant_id), "concern_id": str(concern.id)}
    enqueue(session, REPORT_JOB, payload)
    return incident_id


register_incident_opener(report_received)


@on_alert
def alert_stored(db: Database, recorded: Recorded) -> None:
    """A new critical alert is an incident at once (the CISO is told by the incident); a repeat folded into an
    alert already promoted gives the same incident."""
    alert = recorded.alert
    if not recorded.created or alert.severity != Severity.CRITICAL.value or alert.rule in OPENED_AT_SOURCE:
        return
    since = f"{alert.first_seen:%Y-%m-%d %H:%M} UTC"
    with platform_session(db) as session:
        service.open_from_alert(
            session,
            SYSTEM,
            str(alert.id),
            f"Alert {alert.id} ({alert.rule}): {alert.title}; {alert.count} event(s) since {since}",
            title=f"Critical alert: {alert.title}"[:200],
            severity=Severity.CRITICAL,
        )
