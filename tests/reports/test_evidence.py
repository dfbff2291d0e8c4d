"""Live evidence: every control holds on a sound platform; breaking each one in turn turns its line red
(and the whole document with it), and restoring it turns it green again. The document is signed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.audit import record as audit
from bookwarden.audit.events import Action
from bookwarden.audit.signing import load_signing_key, trusted_public_keys
from bookwarden.backup.models import BackupDrill, DrillOutcome
from bookwarden.core.errors import Forbidden, InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.incidents import service as incidents
from bookwarden.incidents.models import IncidentImpact
from bookwarden.monitor.alerts import delivery
from bookwarden.monitor.alerts import service as alert_service
from bookwarden.monitor.alerts.models import AlertSeverity, AlertStatus, StoredAlert
from bookwarden.privacy.retention.service import PURGE_JOB
from bookwarden.reports import evidence, render
from bookwarden.reports.controls import MONTHLY_REPORT_JOB
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.helpers import acting, define_role, grant

PLATFORM_READER = acting(None, Permission.PLATFORM_REPORTS_READ)
STRONG = "violet tractor mango 42 harbour"
WEAK_HASH = PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1).hash("some password")
CARD = "4111 1111 1111 1111"
HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)


def statuses(db, settings, actor=PLATFORM_READER) -> dict[str, str]:
    signed = evidence.build(db, actor, settings)
    return {line["key"]: line["status"] for line in signed["evidence"]["controls"]}


def red_then_green(db, settings, key: str, brk: Callable[[], None], restore: Callable[[], None]) -> None:
    """`brk` turns exactly `key`'s line red; `restore` turns it green again."""
    assert statuses(db, settings)[key] == "holds"
    brk()
    try:
        broken = statuses(db, settings)
        assert broken[key] == "fails", broken
        assert [k for k, s in broken.items() if s == "fails"] == [key]
    finally:
        restore()
    assert statuses(db, settings)[key] == "holds"


def _admin(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def test_every_control_holds_on_a_sound_platform_and_the_evidence_is_signed(sound, settings):
    signed = evidence.build(sound.db, PLATFORM_READER, settings)
    document = signed["evidence"]
    assert document["holds"] is True and document["failing"] == []
    lines = {line["key"]: line for line in document["controls"]}
    assert {k for k, line in lines.items() if line["status"] == "holds"} >= {
        "tenant_isolation",
        "audit_trail",
        "administrators_mfa",
        "password_hashes",
        "operator_access",
        "security_contacts",
        "retention",
        "restore_drill",
        "backups",
        "no_payment_data",
        "periodic_reports",
        "intrusion_detection",
        "file_integrity",
        "incident_handling",
        "breach_notice",
    }
    assert lines["restore_drill"]["detail"] == f"the last restore drill passed on {sound.drill.started_at:%Y-%m-%d}"
    assert all(line["promise"] and line["assessment"] for line in lines.values())

    # Signed with the platform's key: it verifies, and any change to it does not.
    assert signed["key_id"] == load_signing_key(settings).key_id
    assert evidence.verify(signed, trusted_public_keys(settings)) == document
    forged = json.loads(json.dumps(signed))
    forged["evidence"]["controls"][0]["status"] = "holds" if lines["tenant_isolation"]["status"] != "holds" else "x"
    with pytest.raises(InvalidInput, match="does not verify"):
        evidence.verify(forged, trusted_public_keys(settings))

    page = render.evidence_html(signed)
    assert "<script" not in page and signed["signature"] in page and "holds" in page


def test_breaking_each_control_turns_its_line_red(sound, settings, owner_conn, superuser_conn):
    db, tenant_id = sound.db, sound.tenants[0]

    # Row-level security no longer forced on one tenant table (the catalog says so).
    red_then_green(
        db,
        settings,
        "tenant_isolation",
        lambda: owner_conn.execute("ALTER TABLE loans NO FORCE ROW LEVEL SECURITY"),
        lambda: owner_conn.execute("ALTER TABLE loans FORCE ROW LEVEL SECURITY"),
    )

    # An audit row tampered with by whoever owns the machine, then put back as it was.
    original = superuser_conn.execute(
        "SELECT details::text FROM audit_events WHERE tenant_id = %s AND seq = 1", (tenant_id,)
    ).fetchone()[0]

    def tamper(value):
        return lambda: superuser_conn.execute(
            "UPDATE audit_events SET details = %s::jsonb WHERE tenant_id = %s AND seq = 1", (value, tenant_id)
        )

    red_then_green(db, settings, "audit_trail", tamper('{"tampered": true}'), tamper(original))

    # An administrator without a second factor: given the role, then disabled.
    with tenant_session(db, tenant_id) as session:
        account = accounts.create_account(
            session,
            _admin(tenant_id),
            kind=AccountKind.STAFF,
            username=f"admin-{uuid.uuid4().hex[:6]}",
            password=STRONG,
        )
    account_id = account.id

    def grant_admin():
        with tenant_session(db, tenant_id) as session:
            grant(session, tenant_id, account_id, BuiltinRole.TENANT_ADMIN)

    def disable():
        with tenant_session(db, tenant_id) as session:
            accounts.disable_account(session, _admin(tenant_id), account_id)

    red_then_green(db, settings, "administrators_mfa", grant_admin, disable)

    # A stored password hash below the argon2id floor.
    good_hash = superuser_conn.execute("SELECT password_hash FROM accounts WHERE id = %s", (account_id,)).fetchone()[0]

    def set_hash(value):
        return lambda: superuser_conn.execute(
            "UPDATE accounts SET password_hash = %s WHERE id = %s", (value, account_id)
        )

    red_then_green(db, settings, "password_hashes", set_hash(WEAK_HASH), set_hash(good_hash))

    # A restore drill that failed, newer than the one that passed.
    failed_id = uuid.uuid4()

    def failed_drill():
        with platform_session(db) as session:
            session.add(
                BackupDrill(
                    id=failed_id,
                    backup_id=sound.backups[0].id,
                    started_at=datetime.now(UTC),
                    finished_at=datetime.now(UTC),
                    outcome=DrillOutcome.FAILED,
                    failure="step tables: 3 rows differ",
                    steps=[],
                )
            )

    red_then_green(
        db,
        settings,
        "restore_drill",
        failed_drill,
        lambda: superuser_conn.execute("DELETE FROM backup_drills WHERE id = %s", (failed_id,)),
    )

    # A card number in a stored field that came in past the entry points (here: straight SQL).
    with tenant_session(db, tenant_id) as session:
        define_role(session, tenant_id, "shelvers", {Permission.LOANS_READ}, "shelving staff")

    def describe(value):
        return lambda: superuser_conn.execute(
            "UPDATE roles SET description = %s WHERE tenant_id = %s AND name = 'shelvers'", (value, tenant_id)
        )

    red_then_green(db, settings, "no_payment_data", describe(f"paid with {CARD}"), describe("shelving staff"))

    # The newest backups older than their daily schedule.
    ids = [b.id for b in sound.backups]

    def age(interval):
        return lambda: superuser_conn.execute(
            "UPDATE backups SET started_at = now() - %s::interval WHERE id = ANY(%s)", (interval, ids)
        )

    red_then_green(db, settings, "backups", age("3 days"), age("1 hour"))

    # A job enforcing a published period paused (or never run when due).
    def pause(kind, enabled):
        return lambda: superuser_conn.execute("UPDATE job_schedules SET enabled = %s WHERE kind = %s", (enabled, kind))

    red_then_green(db, settings, "retention", pause(PURGE_JOB, False), pause(PURGE_JOB, True))
    red_then_green(db, settings, "periodic_reports", pause(MONTHLY_REPORT_JOB, False), pause(MONTHLY_REPORT_JOB, True))

    # An institution left without a security contact.
    def drop_contacts():
        superuser_conn.execute("DELETE FROM security_contacts WHERE tenant_id = %s", (tenant_id,))

    def add_contact():
        with tenant_session(db, tenant_id) as session:
            add_security_contact(session, "security-again@example.org")

    red_then_green(db, settings, "security_contacts", drop_contacts, add_contact)


@contextmanager
def savepoint(db):
    """What is done inside is undone after (the test's own transaction, at a savepoint)."""
    nested = db.bind.begin_nested()
    try:
        yield
    finally:
        nested.rollback()


def test_an_operator_read_without_a_grant_turns_its_line_red(db, tenant, settings):
    reader = acting(tenant.id, Permission.REPORTS_SECURITY_READ)
    operator = Principal(PrincipalKind.OPERATOR, uuid.uuid4(), None, frozenset())

    def line():
        signed = evidence.build(db, reader, settings)
        return next(c for c in signed["evidence"]["controls"] if c["key"] == "operator_access")

    assert line()["status"] == "holds"
    with savepoint(db):
        with tenant_session(db, tenant.id) as session:
            audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), actor=operator)
        found = line()
        assert found["status"] == "fails" and "no grant named" in found["detail"]
    with savepoint(db):
        # Naming a grant the institution never gave is no better.
        through = Principal(PrincipalKind.OPERATOR, operator.id, tenant.id, frozenset(), grant_id=uuid.uuid4())
        with tenant_session(db, tenant.id) as session:
            audit.record(session, Action.PATRON_VIEWED, ("patron", uuid.uuid4()), actor=through)
        assert "never gave" in line()["detail"]
    with savepoint(db):
        # Asking for a grant reaches no data: it stays green.
        with tenant_session(db, tenant.id) as session:
            audit.record(session, Action.GRANT_REQUESTED, ("operator_grant", uuid.uuid4()), actor=operator)
        assert line()["status"] == "holds"
    with savepoint(db):
        # Neither does handling an incident that concerns the institution: scope and notices name ids only.
        with tenant_session(db, tenant.id) as session:
            for action in (Action.INCIDENT_AFFECTED, Action.BREACH_MARKED, Action.BREACH_NOTIFIED):
                audit.record(session, action, ("incident", uuid.uuid4()), actor=operator)
        assert line()["status"] == "holds"
    assert line()["status"] == "holds"


def test_an_institution_reads_its_own_evidence_only(db, tenant, other_tenant, settings):
    reader = acting(tenant.id, Permission.REPORTS_SECURITY_READ)
    signed = evidence.build(db, reader, settings)
    assert signed["evidence"]["scope"] == {"tenant_id": str(tenant.id), "name": tenant.name}
    with pytest.raises(Forbidden):
        evidence.build(db, reader, settings, other_tenant.id)
    with pytest.raises(Forbidden):
        evidence.build(db, acting(tenant.id, Permission.AUDIT_READ), settings)
    # An operator needs the platform permission, and may name an institution.
    named = evidence.build(db, PLATFORM_READER, settings, other_tenant.id)
    assert named["evidence"]["scope"]["tenant_id"] == str(other_tenant.id)
    with pytest.raises(Forbidden):
        evidence.build(db, acting(None, Permission.PLATFORM_BACKUPS_READ), settings)


def test_the_evidence_route_gives_an_institution_its_own_view(client_for, tenant, other_tenant):
    client = client_for(tenant, permissions={Permission.REPORTS_SECURITY_READ})
    answer = client.get("/api/v1/evidence")
    assert answer.status_code == 200, answer.text
    assert answer.json()["evidence"]["scope"]["tenant_id"] == str(tenant.id)
    page = client.get("/api/v1/evidence", params={"format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and tenant.name in page.text
    refused = client_for(other_tenant, permissions={Permission.AUDIT_READ}).get("/api/v1/evidence")
    assert refused.status_code == 403


def test_the_evidence_command_exits_1_when_a_control_fails(sound, cli_env, owner_conn, tmp_path):  # noqa: F811
    from bookwarden.cli import app

    target = tmp_path / "evidence.json"
    held = CliRunner().invoke(app, ["evidence", "--output", str(target)], catch_exceptions=False)
    assert held.exit_code == 0, held.output
    assert json.loads(target.read_text())["evidence"]["holds"] is True
    owner_conn.execute("ALTER TABLE posts NO FORCE ROW LEVEL SECURITY")
    try:
        failed = CliRunner().invoke(app, ["evidence", "--format", "html"], catch_exceptions=False)
    finally:
        owner_conn.execute("ALTER TABLE posts FORCE ROW LEVEL SECURITY")
    assert failed.exit_code == 1
    assert "posts: row-level security not forced" in failed.stdout and "<script" not in failed.stdout


def test_breaking_each_monitoring_and_incident_control_turns_its_line_red(sound, settings, superuser_conn):
    db, tenant_id = sound.db, sound.tenants[0]

    # The monitor's collectors stopped: nothing saved for an hour.
    def positions_at(interval):
        return lambda: superuser_conn.execute(
            "UPDATE monitor_positions SET updated_at = now() - %s::interval", (interval,)
        )

    red_then_green(db, settings, "intrusion_detection", positions_at("1 hour"), positions_at("0 seconds"))
    found = evidence.build(db, PLATFORM_READER, settings)
    assert "15 minutes" in next(c for c in found["evidence"]["controls"] if c["key"] == "intrusion_detection")["detail"]

    # An alert mail that failed for good.
    def failed_delivery():
        superuser_conn.execute(
            "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, last_error, finished_at) "
            "VALUES (%s, '{}'::jsonb, 'failed', 5, 5, 'smtp refused', now())",
            (delivery.MAIL_JOB,),
        )

    red_then_green(
        db,
        settings,
        "intrusion_detection",
        failed_delivery,
        lambda: superuser_conn.execute("DELETE FROM jobs WHERE kind = %s", (delivery.MAIL_JOB,)),
    )

    # The hourly file-integrity scan stopped: the last one finished three hours ago.
    def scanned_at(interval):
        return lambda: superuser_conn.execute(
            "UPDATE host_scans SET finished_at = now() - %s::interval WHERE id = %s", (interval, sound.scan)
        )

    red_then_green(db, settings, "file_integrity", scanned_at("3 hours"), scanned_at("1 minute"))

    # No approved baseline (superseded without a successor).
    def baseline(status):
        return lambda: superuser_conn.execute(
            "UPDATE fim_baselines SET status = %s WHERE id = %s", (status, sound.baseline.id)
        )

    red_then_green(db, settings, "file_integrity", baseline("superseded"), baseline("active"))

    # A file-change alert nobody acknowledged for two days; acknowledged, the line is green again.
    alert_id = uuid.uuid4()

    def unacknowledged():
        with platform_session(db) as session:
            seen = datetime.now(UTC) - timedelta(days=2)
            session.add(
                StoredAlert(
                    id=alert_id,
                    rule="host_fim_change",
                    title="File changed on a protected path",
                    severity=AlertSeverity.HIGH,
                    kind="detection",
                    group_key="{}",
                    grouped={},
                    first_seen=seen,
                    last_seen=seen,
                    count=1,
                    status=AlertStatus.OPEN,
                )
            )

    def acknowledge():
        with platform_session(db) as session:
            alert_service.acknowledge(session, acting(None, Permission.PLATFORM_ALERTS_MANAGE), alert_id)

    red_then_green(db, settings, "file_integrity", unacknowledged, acknowledge)

    # An incident opened twenty minutes ago whose CISO mail never went out; the mail job's record restores it.
    with platform_session(db) as session:
        incident = incidents.open_incident(session, HANDLER, title="Odd sign-ins", summary="many failures")
    incident_id = incident.id

    def opened_at(interval):
        return lambda: superuser_conn.execute(
            "UPDATE incidents SET opened_at = now() - %s::interval WHERE id = %s", (interval, incident_id)
        )

    def ciso_told():
        with platform_session(db) as session:
            incidents.ciso_notified(session, incident_id, "opened", 1)

    opened_at("1 minute")()
    assert statuses(db, settings)["incident_handling"] == "holds"  # its mail is still on its way
    red_then_green(db, settings, "incident_handling", opened_at("20 minutes"), ciso_told)

    # Waiting five hours for triage (medium: four) with no escalation taken: the escalation job stopped.
    def escalate():
        with platform_session(db) as session:
            assert [e.step for e in incidents.escalate_due(session)] == [1]

    red_then_green(db, settings, "incident_handling", opened_at("5 hours"), escalate)

    # A breach clock run out with the institution neither told nor decided on.
    breach_id = uuid.uuid4()

    def breach_untold():
        with tenant_session(db, tenant_id) as session:
            session.add(
                IncidentImpact(
                    tenant_id=tenant_id,
                    incident_id=breach_id,
                    aware_at=datetime.now(UTC) - timedelta(hours=30),
                    processor_due_at=datetime.now(UTC) - timedelta(hours=6),
                )
            )

    def told(hours_before_due):
        return lambda: superuser_conn.execute(
            "UPDATE incident_impacts SET institution_told_at = processor_due_at - %s::interval WHERE incident_id = %s",
            (f"{hours_before_due} hours", breach_id),
        )

    red_then_green(db, settings, "breach_notice", breach_untold, told(2))
    # Told, but after its clock ran out: red as well.
    red_then_green(db, settings, "breach_notice", told(-3), told(2))
    found = evidence.build(db, acting(tenant_id, Permission.REPORTS_SECURITY_READ), settings)
    assert next(c for c in found["evidence"]["controls"] if c["key"] == "breach_notice")["status"] == "holds"
