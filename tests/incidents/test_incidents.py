"""Incidents: opened by hand, from an alert, or by the platform's own findings (a failed drill, a chain that fails
verification, a lockout storm, a patron's report); the CISO is mailed at once; untriaged incidents escalate by
severity, each step once; the life cycle runs in order and closes only with its review; every action is a line
of the timeline and an audit event; an institution sees only the incidents that affect it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.audit import verify
from bookwarden.audit.signing import TrustedKeys
from bookwarden.backup.drill import _failure_listeners
from bookwarden.backup.models import Backup, BackupDrill, BackupKind, BackupStatus, DrillOutcome
from bookwarden.core.config import get_settings
from bookwarden.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.core.sensitive import SensitiveDataRefused
from bookwarden.db.session import PLATFORM, platform_session, tenant_session
from bookwarden.identity.models import AccountKind
from bookwarden.identity.operators import service as operators
from bookwarden.identity.operators.models import OperatorAccount
from bookwarden.incidents import affected, hooks, service
from bookwarden.incidents import jobs as incident_jobs
from bookwarden.incidents.models import Incident, IncidentCategory, IncidentSource, IncidentState, Severity
from bookwarden.jobs.models import Job
from bookwarden.jobs.service import handler_for
from bookwarden.monitor.alerts import subscribers
from bookwarden.monitor.alerts.service import raise_alert
from bookwarden.privacy.concerns import service as concerns
from bookwarden.privacy.concerns.models import Concern, ConcernKind
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.helpers import acting
from tests.privacy.test_complaints import _account, _patron

HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)
OPERATOR_URL = "/api/v1/operator/incidents"
REVIEW = {
    "root_cause": "An API token of a retired integration was never revoked.",
    "actions_taken": "Token revoked; sessions ended; addresses blocked.",
    "lessons_learned": "Tokens of integrations need an owner and an expiry.",
    "follow_up": "Quarterly review of long-lived tokens.",
}


def _open(db, **overrides):
    with platform_session(db) as session:
        arguments = {"title": "Suspicious reads", "summary": "Many patron reads from one address.", **overrides}
        return service.open_incident(session, HANDLER, **arguments)


def _jobs(db, kind) -> list[dict]:
    with platform_session(db) as session:
        return [job.payload for job in session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id))]


def _timeline(db, incident_id) -> list[str]:
    with platform_session(db) as session:
        return [entry.kind for entry in service.timeline_of(session, incident_id)]


def _platform_events(db, incident_id) -> list[str]:
    with tenant_session(db, PLATFORM) as session:
        return list(
            session.execute(
                text("SELECT action FROM audit_events WHERE target_id = :i ORDER BY seq"), {"i": incident_id}
            ).scalars()
        )


def test_an_incident_runs_its_life_cycle_in_order_and_every_step_is_in_its_timeline_and_the_trail(db):
    incident = _open(db, severity=Severity.HIGH)
    affected.triage(db, HANDLER, incident.id, severity=Severity.CRITICAL, category=IncidentCategory.UNAUTHORISED_ACCESS)
    with platform_session(db) as session, pytest.raises(Conflict, match="must be contained to become eradicated"):
        service.advance(session, HANDLER, incident.id, IncidentState.ERADICATED, "removed it")
    with platform_session(db) as session, pytest.raises(Conflict, match="closes after recovery"):
        service.close(session, HANDLER, incident.id, REVIEW)
    with platform_session(db) as session, pytest.raises(InvalidInput, match="lessons_learned"):
        service.close(session, HANDLER, incident.id, {**REVIEW, "lessons_learned": " "})
    for step in (IncidentState.CONTAINED, IncidentState.ERADICATED, IncidentState.RECOVERED):
        with platform_session(db) as session:
            service.advance(session, HANDLER, incident.id, step, f"{step} done")
    with platform_session(db) as session:
        closed = service.close(session, HANDLER, incident.id, REVIEW)
        assert closed.state == "closed" and closed.review == REVIEW
    with platform_session(db) as session, pytest.raises(Conflict, match="closed"):
        service.advance(session, HANDLER, incident.id, IncidentState.CONTAINED, "again")

    assert _timeline(db, incident.id) == ["opened", "triaged", "contained", "eradicated", "recovered", "closed"]
    assert _platform_events(db, incident.id) == [
        "incident.opened",
        "incident.triaged",
        "incident.advanced",
        "incident.advanced",
        "incident.advanced",
        "incident.closed",
    ]


def test_a_false_positive_closes_from_triage_with_its_review(db):
    incident = _open(db)
    affected.triage(db, HANDLER, incident.id, severity=Severity.LOW, category=IncidentCategory.FALSE_POSITIVE)
    with platform_session(db) as session:
        assert service.close(session, HANDLER, incident.id, REVIEW).state == "closed"


def test_only_incident_handlers_act_and_bad_input_changes_nothing(db):
    with platform_session(db) as session, pytest.raises(Forbidden):
        service.open_incident(session, acting(None, Permission.PLATFORM_BACKUPS_MANAGE), title="x", summary="y")
    with platform_session(db) as session, pytest.raises(InvalidInput, match="one line"):
        service.open_incident(session, HANDLER, title="two\nlines", summary="y")
    with platform_session(db) as session, pytest.raises(SensitiveDataRefused):
        service.open_incident(session, HANDLER, title="card", summary="card 4111 1111 1111 1111 leaked")
    incident = _open(db)
    with pytest.raises(NotFound, match="no institution"):
        affected.triage(
            db,
            HANDLER,
            incident.id,
            severity=Severity.LOW,
            category=IncidentCategory.OTHER,
            institutions=[uuid.uuid4()],
        )
    assert _timeline(db, incident.id) == ["opened"]


def test_the_ciso_is_mailed_at_once_of_every_incident(db, smtp_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("BOOKWARDEN_CISO_EMAILS", "ciso@platform.example")
    get_settings.cache_clear()
    try:
        incident = _open(db, severity=Severity.CRITICAL)
        [payload] = [p for p in _jobs(db, service.MAIL_JOB) if p["incident_id"] == str(incident.id)]
        handler_for(service.MAIL_JOB)(db, payload)
    finally:
        get_settings.cache_clear()

    [mail] = [m for m in smtp_server.messages if str(incident.id) in m.message.get_content()]
    assert mail.recipients == ["ciso@platform.example"]
    assert "incident opened, critical: Suspicious reads" in mail.message["Subject"]
    assert _timeline(db, incident.id) == ["opened", "ciso_notified"]


def _age(db, incident_id, by: timedelta) -> None:
    with platform_session(db) as session:
        session.execute(
            text("UPDATE incidents SET opened_at = opened_at - :by WHERE id = :i"), {"by": by, "i": incident_id}
        )


def test_an_untriaged_incident_escalates_by_its_severity_each_step_exactly_once(db):
    critical = _open(db, severity=Severity.CRITICAL)
    low = _open(db, severity=Severity.LOW)
    _age(db, critical.id, timedelta(minutes=16))
    _age(db, low.id, timedelta(minutes=16))  # a low incident waits 24 hours before its first step

    for _ in range(3):  # the job runs every minute: a step is taken once however often it runs
        handler_for(incident_jobs.ESCALATE_JOB)(db, {})

    assert _timeline(db, critical.id) == ["opened", "escalated"]
    assert _timeline(db, low.id) == ["opened"]
    _age(db, critical.id, timedelta(minutes=30))  # 46 minutes: three times 15, every step due
    handler_for(incident_jobs.ESCALATE_JOB)(db, {})
    handler_for(incident_jobs.ESCALATE_JOB)(db, {})
    assert _timeline(db, critical.id) == ["opened", "escalated", "escalated", "escalated"]
    escalations = [p for p in _jobs(db, service.MAIL_JOB) if p["kind"] == "escalated"]
    assert [(p["incident_id"], p["step"]) for p in escalations] == [(str(critical.id), n) for n in (1, 2, 3)]

    triaged = _open(db, severity=Severity.CRITICAL)
    affected.triage(db, HANDLER, triaged.id, severity=Severity.CRITICAL, category=IncidentCategory.MALWARE)
    _age(db, triaged.id, timedelta(hours=2))
    handler_for(incident_jobs.ESCALATE_JOB)(db, {})
    assert _timeline(db, triaged.id) == ["opened", "triaged"]  # triaged in time: nothing to escalate


def test_assignment_is_to_an_active_operator_whose_role_handles_incidents(db):
    incident = _open(db)
    with platform_session(db) as session:
        operators.create_operator(session, db.keyring, db.master, "hana.ops", "operator_ops")
        operators.create_operator(session, db.keyring, db.master, "dora.dpo", "dpo")
        session.execute(text("UPDATE operator_accounts SET status = 'active', password_hash = 'x', totp_secret = 'x'"))
        ops, dpo = (session.scalars(select(OperatorAccount).where(OperatorAccount.username == u)).one()
                    for u in ("hana.ops", "dora.dpo"))  # fmt: skip
    with platform_session(db) as session, pytest.raises(InvalidInput, match="handles incidents"):
        service.assign(session, HANDLER, incident.id, dpo.id)
    with platform_session(db) as session:
        assigned = service.assign(session, HANDLER, incident.id, service.handler_id(session, "hana.ops"))
        assert assigned.assignee_id == ops.id
    assert _timeline(db, incident.id) == ["opened", "assigned"]


def test_an_alert_promoted_twice_while_open_is_one_incident(db):
    with platform_session(db) as session:
        first = service.open_from_alert(session, HANDLER, "alert-42", "Brute force from 203.0.113.7")
    with platform_session(db) as session:
        again = service.open_from_alert(session, HANDLER, "alert-42", "Seen again")
    assert again.id == first.id and first.source == IncidentSource.ALERT
    assert _timeline(db, first.id) == ["opened", "seen_again"]
    with platform_session(db) as session, pytest.raises(InvalidInput, match="alert"):
        service.open_from_alert(session, HANDLER, "bad ref with spaces", "x")


def test_a_new_critical_alert_opens_an_incident_and_others_wait_for_a_handler(db):
    """Through the alerts' subscribers, as `monitor run` and the host checks tell them: a critical alert is an
    incident at once, once; a high one is not; a rule whose source opens its own incident opens no second."""

    def stored(rule: str, severity: str):
        with platform_session(db) as session:
            recorded = raise_alert(session, rule=rule, title=f"{rule} fired", severity=severity, group={"n": 1})
        subscribers.tell(db, [recorded])
        return recorded.alert

    def incidents_of(alert) -> list[Incident]:
        with platform_session(db) as session:
            return session.scalars(select(Incident).where(Incident.source_ref == str(alert.id))).all()

    critical = stored("host_rootcheck_finding", "critical")
    [incident] = incidents_of(critical)
    assert (incident.source, incident.severity) == (IncidentSource.ALERT.value, Severity.CRITICAL.value)
    repeat = stored("host_rootcheck_finding", "critical")  # folded into the same alert: no second incident
    assert repeat.id == critical.id and [i.id for i in incidents_of(repeat)] == [incident.id]
    assert incidents_of(stored("sshd_brute_force", "high")) == []
    assert incidents_of(stored("platform_audit_verification_failed", "critical")) == []


def test_a_failed_drill_opens_an_incident_in_its_own_transaction(db):
    assert hooks.drill_failed in _failure_listeners
    with platform_session(db) as session:
        backup = Backup(
            kind=BackupKind.PLATFORM, status=BackupStatus.COMPLETE, directory="/x", manifest_sha256="0" * 64
        )
        session.add(backup)
        session.flush()
        drill = BackupDrill(backup_id=backup.id, outcome=DrillOutcome.FAILED, steps=[], failure="step chunks: bad")
        session.add(drill)
        session.flush()
        hooks.drill_failed(session, drill)
        hooks.drill_failed(session, drill)  # the next day's failure, while the first incident is open
    with platform_session(db) as session:
        [incident] = session.scalars(select(Incident).where(Incident.source == "restore_drill")).all()
    assert (incident.severity, incident.category) == ("high", "availability")
    assert str(drill.id) in incident.summary
    assert _timeline(db, incident.id) == ["opened", "seen_again"]


def test_a_chain_that_fails_verification_opens_a_critical_incident_naming_its_institution(db, tenant):
    assert hooks.chain_tampered in verify._tamper_listeners
    report = verify.ChainReport(tenant.id, verify.GENESIS_START)
    report.finding = verify.Finding(tenant.id, 7, None, "body digest mismatch")
    verify._tampered(db, tenant.id, report)
    with platform_session(db) as session:
        [incident] = session.scalars(select(Incident).where(Incident.source == "audit_verify")).all()
    assert (incident.severity, incident.category, incident.institutions) == ("critical", "integrity", [tenant.id])
    assert "seq 7" in incident.summary


def test_verify_chain_hands_a_tampered_chain_to_the_incidents(db, tenant, monkeypatch):
    seen = []
    monkeypatch.setattr(verify, "_tamper_listeners", [lambda db, chain, report: seen.append(chain)])
    clean = verify.verify_chain(db, tenant.id, TrustedKeys())
    assert clean.clean and seen == []
    tampered = verify.ChainReport(tenant.id, verify.GENESIS_START, finding=verify.Finding(tenant.id, 1, None, "x"))
    monkeypatch.setattr(verify, "_verify_chain", lambda *a: tampered)
    assert not verify.verify_chain(db, tenant.id, TrustedKeys()).clean
    assert seen == [tenant.id]


def test_a_lockout_storm_opens_one_incident(db):
    with platform_session(db) as session:
        for n in range(5):
            session.execute(
                text(
                    "INSERT INTO auth_failures (scope, key, consecutive, window_start, last_failure_at, locked_until) "
                    "VALUES ('account', :k, 12, now(), now(), now() + interval '4 minutes')"
                ),
                {"k": uuid.uuid4().bytes + bytes([n])},
            )
    assert incident_jobs.find_lockout_storm(db, threshold=6) is None
    first = incident_jobs.find_lockout_storm(db, threshold=5)
    second = incident_jobs.find_lockout_storm(db, threshold=5)
    assert first is not None and second == first
    assert _timeline(db, first) == ["opened", "seen_again"]


def test_a_patrons_report_of_unauthorised_access_opens_an_incident_the_institution_sees(
    db, tenant, other_tenant, issue_token, app
):
    with tenant_session(db, tenant.id) as session:
        patron_id = _patron(session)
        account = _account(session, "ann", kind=AccountKind.PATRON, patron_id=patron_id)
    patron = Principal(PrincipalKind.ACCOUNT, account.id, tenant.id, frozenset({Permission.SELF_SERVICE}))
    with tenant_session(db, tenant.id) as session:
        received = concerns.report_own(session, patron, ConcernKind.UNAUTHORISED_ACCESS, "Someone signed in as me.")
        child = concerns.report_own(session, patron, ConcernKind.CHILD_DATA, "My son's data is here.")
    with tenant_session(db, tenant.id) as session:
        incident_id = session.get(Concern, (tenant.id, received.reference)).incident_id
        assert session.get(Concern, (tenant.id, child.reference)).incident_id is None
    [payload] = _jobs(db, hooks.REPORT_JOB)
    handler_for(hooks.REPORT_JOB)(db, payload)

    with platform_session(db) as session:
        incident = service.get(session, incident_id)
    assert (incident.source, incident.institutions) == ("report", [tenant.id])
    assert "Someone signed in" not in incident.summary  # the report's words stay the institution's
    reader = TestClient(app, raise_server_exceptions=False)
    reader.headers["Authorization"] = f"Bearer {issue_token(tenant, permissions={Permission.INCIDENTS_READ})}"
    assert [i["id"] for i in reader.get("/api/v1/incidents").json()["items"]] == [str(incident_id)]
    stranger = TestClient(app, raise_server_exceptions=False)
    stranger.headers["Authorization"] = f"Bearer {issue_token(other_tenant, permissions={Permission.INCIDENTS_READ})}"
    assert stranger.get(f"/api/v1/incidents/{incident_id}").status_code == 404
    assert stranger.get("/api/v1/incidents").json()["items"] == []


def test_the_operator_api_opens_triages_and_shows_with_its_timeline(app, operator_token, tenant, issue_token):
    operator = TestClient(app, raise_server_exceptions=False)
    operator.headers["Authorization"] = f"Bearer {operator_token}"
    opened = operator.post(OPERATOR_URL, json={"title": "Odd reads", "summary": "Seen by monitoring."})
    assert opened.status_code == 201, opened.text
    incident_id = opened.json()["id"]
    triaged = operator.post(
        f"{OPERATOR_URL}/{incident_id}/triage",
        json={"severity": "high", "category": "unauthorised_access", "institutions": [str(tenant.id)]},
    )
    assert triaged.status_code == 200, triaged.text
    shown = operator.get(f"{OPERATOR_URL}/{incident_id}").json()
    assert [e["kind"] for e in shown["timeline"]] == ["opened", "triaged"]
    assert operator.post(f"{OPERATOR_URL}/{incident_id}/close", json={"review": REVIEW}).status_code == 409
    assert operator.get(f"{OPERATOR_URL}/{uuid.uuid4()}").status_code == 404

    institution = TestClient(app, raise_server_exceptions=False)
    institution.headers["Authorization"] = f"Bearer {issue_token(tenant, permissions={Permission.INCIDENTS_READ})}"
    seen = institution.get(f"/api/v1/incidents/{incident_id}")
    assert seen.status_code == 200 and seen.json()["impact"]["subjects"] == []
    assert institution.get(OPERATOR_URL).status_code == 403


def test_an_unknown_incident_is_not_found(db):
    with platform_session(db) as session, pytest.raises(NotFound):
        service.read(session, HANDLER, uuid.uuid4())
