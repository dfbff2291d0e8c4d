"""Where the platform's own findings open incidents: the registries of the lower areas, filled here.

- a restore drill that fails (backup/drill.py `on_failure`), in the drill's own transaction;
- an audit chain that fails verification (audit/verify.py `on_tampered`), in a transaction of its own;
- a report of suspected unauthorised access to an account (privacy/concerns `register_incident_opener`): the
  report's transaction is the institution's, which cannot write the platform's tables, so the incident's id is
  chosen there and a job opens it at once (incidents/jobs.py); the report keeps that id.

A storm of account lockouts is found by a job (incidents/jobs.py). Monitoring alerts call `open_from_alert`
(incidents/service.py) from the alerts' own registry.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy.orm import Session

from bookwarden.audit.verify import ChainReport, on_tampered
from bookwarden.backup.drill import on_failure
from bookwarden.backup.models import BackupDrill
from bookwarden.db.session import PLATFORM, Database, TenantSession, platform_session
from bookwarden.incidents import service
from bookwarden.incidents.models import IncidentCategory, IncidentSource, Severity
from bookwarden.jobs.service import enqueue
from bookwarden.privacy.concerns.models import Concern, ConcernKind
from bookwarden.privacy.concerns.service import register_incident_opener

REPORT_JOB = "incidents.open_from_report"


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
