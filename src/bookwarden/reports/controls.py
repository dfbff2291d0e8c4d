"""The controls behind the statement's promises, each with a check run now against the live system.

One line per promise (the statement read sentence by sentence; promises about buildings, staff vetting and
certificates have no software control and are left to the operator's own evidence). Each line names the
control that keeps the promise, the HECVAT and CSA CAIQ question areas it answers, and its check. Checks
read through the owning area's functions. An institution's view checks its own chain and rows (and what
is the platform's for everyone: the catalog, schedules, backups, operators); the platform's view checks
every institution.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bookwarden.access import summary as access
from bookwarden.audit.checkpoints import latest_checkpoint
from bookwarden.audit.signing import TrustedKeys, trusted_public_keys
from bookwarden.audit.verify import verify_chain
from bookwarden.backup import summary as backups
from bookwarden.backup.models import DrillOutcome
from bookwarden.core.config import Settings
from bookwarden.db import isolation, payment_scan
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity import summary as identity
from bookwarden.incidents import summary as incidents
from bookwarden.jobs.summary import schedule_problems
from bookwarden.monitor.alerts import summary as alerts
from bookwarden.monitor.collect import summary as collectors
from bookwarden.monitor.fim import summary as host_checks
from bookwarden.privacy import periods
from bookwarden.reports.registry import Finding, Scope, control, fails, holds
from bookwarden.reports.sections import chains, institutions

DRILL_AT_MOST = timedelta(days=7)  # drills run daily; a week without a finished one is no "ongoing" testing
MONTHLY_REPORT_JOB = "reports.monthly"
# The collectors save their positions with every batch they read, and the audit trail moves all day: a
# pipeline that has saved nothing for this long has stopped (or the platform has been silent that long).
COLLECTORS_WITHIN = timedelta(minutes=15)
# The file-integrity scan runs hourly (monitor/fim/jobs.py); a scan may start late and take a while.
FIM_SCAN_WITHIN = timedelta(hours=2)
# An open host-check alert (a file changed, a rootcheck finding) must be acknowledged by then.
HOST_ALERT_WITHIN = timedelta(hours=24)
HOST_RULES = ("host_fim_change", "host_rootcheck_finding")


def _lines(problems: list[str], limit: int = 10) -> str:
    shown = "; ".join(problems[:limit])
    return shown + (f"; and {len(problems) - limit} more" if len(problems) > limit else "")


def tenant_isolation(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    with platform_session(db) as session:
        problems = isolation.isolation_problems(session)
    tables = len(isolation.tenant_tables())
    if problems:
        return fails(_lines(problems), tables=tables, failing=len(problems))
    return holds(f"all {tables} tenant tables have row-level security enabled, forced and a policy", tables=tables)


def audit_chain(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    keys = TrustedKeys(*trusted_public_keys(settings))
    verified, problems = [], []
    for chain in chains(db, scope):
        report = verify_chain(db, chain, keys)
        with tenant_session(db, chain) as session:
            sealed = latest_checkpoint(session)
        if not report.clean:
            problems.append(str(report.finding))
        else:
            verified.append((chain, report.last_seq, sealed.tree_size if sealed else 0))
    if problems:
        return fails(_lines(problems), chains=len(verified) + len(problems), broken=len(problems))
    if scope.is_platform:
        return holds(f"{len(verified)} chains verify, each up to its newest signed checkpoint", chains=len(verified))
    _, events, checkpoint = verified[0]
    sealed = f"sealed up to signed checkpoint {checkpoint}" if checkpoint else "not yet sealed by a checkpoint"
    return holds(f"the chain verifies from its start to event {events}, {sealed}", events=events, checkpoint=checkpoint)


def administrators_mfa(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    missing = 0
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            missing += len(identity.privileged_without_second_factor(session))
    with platform_session(db) as session:
        operators = len(identity.operators_without_second_factor(session))
    if missing or operators:
        return fails(
            f"{missing} account(s) with administrative permissions and {operators} operator account(s) have no "
            "second factor",
            accounts=missing,
            operators=operators,
        )
    return holds("every active account with administrative permissions, and every operator, has a second factor")


def password_hashes(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    weak = []
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            weak += identity.weak_password_hashes(session)
    with platform_session(db) as session:
        weak += identity.weak_operator_hashes(session)
    if weak:
        return fails(_lines([f"{table} {row}: {why}" for table, row, why in weak]), weak=len(weak))
    return holds("every stored password hash is argon2id at or above 19 MiB, 2 passes, 1 lane (OWASP's floor)")


def operator_access(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    since = _month_start(now)
    found = []
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            found += [(tenant.slug, event) for event in access.ungranted_operator_events(session, since, now)]
    if found:
        lines = [f"{slug}: seq {e.seq} {e.action} by {e.operator_id}: {e.why}" for slug, e in found]
        return fails(_lines(lines), events=len(found))
    return holds(f"every operator event since {since:%Y-%m-%d} names an approved grant current at the time")


def retention_on_schedule(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    kinds = periods.jobs()
    with platform_session(db) as session:
        problems = schedule_problems(session, kinds, now)
    if problems:
        return fails(_lines(problems), jobs=len(kinds), failing=len(problems))
    return holds(f"the {len(kinds)} jobs enforcing published periods are scheduled, not overdue, and last succeeded")


def restore_drill(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    with platform_session(db) as session:
        drill = backups.last_drill(session)
    if drill is None:
        return fails("no restore drill has run")
    when = f"{drill.started_at:%Y-%m-%d}"
    if drill.outcome != DrillOutcome.PASSED:
        return fails(f"the last restore drill, on {when}, failed: {drill.failure}", date=when)
    if drill.started_at < now - DRILL_AT_MOST:
        return fails(f"the last restore drill passed on {when}, more than {DRILL_AT_MOST.days} days ago", date=when)
    return holds(f"the last restore drill passed on {when}", date=when)


def backups_on_schedule(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    with platform_session(db) as session:
        late = backups.late_backups(session, now)
    if late:
        return fails(_lines(late))
    return holds("the newest complete platform and keyring backups are each within their daily schedule")


def no_payment_data(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    found = []
    tenant_tables = payment_scan.scanned_tables(tenant=True)
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            found += payment_scan.payment_findings(session, tenant_tables)
    if scope.is_platform:
        with platform_session(db) as session:
            found += payment_scan.payment_findings(session, payment_scan.scanned_tables(tenant=False))
    if found:
        return fails(_lines(found), fields=len(found))
    return holds("no stored text field looks like a payment card, an IBAN or a bank account number")


def security_contacts(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    without = []
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            if access.security_contacts(session) == 0:
                without.append(tenant.slug)
    if without:
        return fails(f"no security contact designated: {_lines(without)}", institutions=len(without))
    return holds("every change of who may do what is mailed to designated security contacts, and there are some")


def periodic_reports(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    with platform_session(db) as session:
        problems = schedule_problems(session, [MONTHLY_REPORT_JOB], now)
    if problems:
        return fails(_lines(problems))
    return holds("the monthly security report job is scheduled and ran when due")


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def intrusion_detection(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    with platform_session(db) as session:
        sources, moved = collectors.last_moved(session)
        failed = alerts.failed_deliveries(session)
    problems = []
    minutes = int(COLLECTORS_WITHIN.total_seconds() // 60)
    if moved is None:
        problems.append("the monitor's collectors have never saved a position (the pipeline has not run)")
    elif moved < now - COLLECTORS_WITHIN:
        problems.append(
            f"the monitor's collectors last moved on at {moved:%Y-%m-%d %H:%M} UTC, over {minutes} minutes ago"
        )
    problems += failed
    if problems:
        return fails(_lines(problems), sources=sources, failed_deliveries=len(failed))
    return holds(
        f"the monitor's collectors moved on within the last {minutes} minutes ({sources} sources) and no alert mail "
        "or webhook failed for good",
        sources=sources,
    )


def file_integrity(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    with platform_session(db) as session:
        baseline = host_checks.approved_baseline(session)
        last = host_checks.last_scan(session)
        waiting = alerts.waiting(session, HOST_RULES, now - HOST_ALERT_WITHIN)
    problems = []
    if baseline is None:
        problems.append("no approved file-integrity baseline")
    if last is None:
        problems.append("no file-integrity scan has run")
    elif last.finished_at < now - FIM_SCAN_WITHIN:
        problems.append(f"the last file-integrity scan finished at {last.finished_at:%Y-%m-%d %H:%M} UTC")
    problems += [f"alert {a.id} ({a.rule}) open since {a.first_seen:%Y-%m-%d %H:%M} UTC" for a in waiting]
    if problems:
        return fails(_lines(problems), open_alerts=len(waiting))
    return holds(
        f"an approved baseline of {baseline.entries} entries; the last scan finished at "
        f"{last.finished_at:%Y-%m-%d %H:%M} UTC and found {last.findings} change(s); no host-check alert is left "
        f"open longer than {HOST_ALERT_WITHIN.days * 24} hours",
        entries=baseline.entries,
        last_scan=last.finished_at.isoformat(timespec="seconds"),
    )


def _incident_ids(db: Database, scope: Scope) -> set | None:
    if scope.is_platform:
        return None
    with tenant_session(db, scope.tenant_id) as session:
        return incidents.affecting(session)


def incident_handling(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    since = _month_start(now)
    ids = _incident_ids(db, scope)
    with platform_session(db) as session:
        problems = incidents.ciso_not_told(session, since, now, ids)
        problems += incidents.overdue_escalations(session, now, ids)
    if problems:
        return fails(_lines(problems), incidents=len(problems))
    return holds(
        f"the CISO was told of every incident opened since {since:%Y-%m-%d} (within "
        f"{int(incidents.CISO_TOLD_WITHIN.total_seconds() // 60)} minutes), and no escalation is overdue"
    )


def breach_notice(db: Database, scope: Scope, now: datetime, settings: Settings) -> Finding:
    since = _month_start(now)
    found = []
    for tenant in institutions(db, scope):
        with tenant_session(db, tenant.id) as session:
            found += [f"{tenant.slug}: {line}" for line in incidents.late_breach_notices(session, since, now)]
    if found:
        return fails(_lines(found), late=len(found))
    return holds(
        "every affected institution of a breach was told, or a decision not to notify was recorded, within its "
        f"clock (late notices of breaches since {since:%Y-%m-%d} count; one still untold past its clock always does)"
    )


control(
    "tenant_isolation",
    "strict data isolation is applied in the application to all layers of the application",
    "every tenant table has row-level security enabled and forced, with the tenant policy (read from the catalog)",
    "HECVAT: Data, Database; CAIQ: DSP (data security), IVS (segmentation)",
    "db",
    tenant_isolation,
)
control(
    "audit_trail",
    "All access control activities produce logs with enough information to meet auditing requirements",
    "the hash-chained audit trail verifies from its start to its head, sealed by signed Merkle checkpoints",
    "HECVAT: Application Security (logging), Systems Management; CAIQ: LOG (audit logging, integrity)",
    "audit",
    audit_chain,
)
control(
    "administrators_mfa",
    "a strict role based password policy that applies to both layers - the operational team members and the "
    "application's users",
    "every active account whose permissions make it administrative, and every operator, has a second factor",
    "HECVAT: Authentication, Authorization and Account Management; CAIQ: IAM (strong authentication)",
    "identity",
    administrators_mfa,
)
control(
    "password_hashes",
    "Passwords are stored in an encrypted form, using a one-way encryption method based on an industry-standard "
    "hash algorithm",
    "every stored password hash is argon2id at or above OWASP's floor (parameters read from each hash string)",
    "HECVAT: Authentication, Authorization and Account Management; CAIQ: IAM, CEK (cryptography)",
    "identity",
    password_hashes,
)
control(
    "operator_access",
    "Access to the infrastructure is limited, based on role and responsibility; we do not access or use Customer "
    "Data except for the purposes set forth in our agreement",
    "no operator event in an institution's trail this month lacks an approved, current grant",
    "HECVAT: Authentication, Authorization and Account Management, Data; CAIQ: IAM (privileged access), DSP",
    "access",
    operator_access,
)
control(
    "security_contacts",
    "access control activities generate notifications to designated users to prevent users from setting up rogue "
    "accounts or otherwise modifying access entitlements",
    "every institution has designated security contacts, mailed every entitlement change",
    "HECVAT: Authentication, Authorization and Account Management; CAIQ: IAM (entitlement review), LOG",
    "access",
    security_contacts,
)
control(
    "retention",
    "Customer data, including private data, is deleted based on the Data Elimination section, and backed up "
    "customer data is deleted periodically",
    "every period the platform publishes is enforced by a job that is scheduled, not overdue, and last succeeded",
    "HECVAT: Privacy (retention), Data (disposal); CAIQ: DSP (retention and deletion)",
    "privacy",
    retention_on_schedule,
)
control(
    "restore_drill",
    "The restore procedures are tested on an ongoing basis to ensure rapid restoration in case of data loss",
    "a restore drill restores the newest backup into a scratch database and checks it; the last one passed",
    "HECVAT: Disaster Recovery Plan, Business Continuity Plan; CAIQ: BCR (backup, restore testing)",
    "backup",
    restore_drill,
)
control(
    "backups",
    "On a regular basis, Ex Libris performs system backups to back up application files, database files, and "
    "storage files",
    "the newest complete platform and keyring backups are within their daily schedule",
    "HECVAT: Disaster Recovery Plan; CAIQ: BCR (backup)",
    "backup",
    backups_on_schedule,
)
control(
    "no_payment_data",
    "Sensitive personal information such as bank information and credit cards are not stored",
    "no stored text field matches a payment card, IBAN or bank account (the entry points' detector, on what is stored)",
    "HECVAT: Data, PCI DSS; CAIQ: DSP (sensitive data)",
    "db",
    no_payment_data,
)
control(
    "periodic_reports",
    "Issuing periodic security reports to Ex Libris management and customers",
    "a monthly job mails each institution's report to its security contacts and the platform's to management",
    "HECVAT: Policies, Procedures and Processes; CAIQ: A&A (independent assessments), GRC",
    "reports",
    periodic_reports,
)
control(
    "intrusion_detection",
    "The system sends real-time alerts and proactively blocks communication once a suspicious attack is discovered",
    "the monitor reads the logs and the audit trail (its collectors moved on within the last 15 minutes), and every "
    "alert mail and webhook was delivered (none failed for good)",
    "HECVAT: Firewalls, IDS, IPS and Networking; CAIQ: LOG (monitoring), TVM",
    "monitor",
    intrusion_detection,
)
control(
    "file_integrity",
    "file integrity checking, and rootkit detection",
    "an approved (second-operator) file-integrity baseline; the hourly scan ran within 2 hours; no file-change or "
    "rootcheck alert left open (unacknowledged) for more than 24 hours",
    "HECVAT: Systems Management; CAIQ: TVM, IVS",
    "monitor",
    file_integrity,
)
control(
    "incident_handling",
    "Every incident is forwarded to the Ex Libris Chief Information Security Officer (CISO) for assessment and "
    "analysis",
    "the CISO's mail went out for every incident opened this month (within 15 minutes), and every escalation "
    "step due for an incident waiting for triage was taken",
    "HECVAT: Incident Handling; CAIQ: SEF (incident management)",
    "incidents",
    incident_handling,
)
control(
    "breach_notice",
    "If Ex Libris becomes aware of any data breach, we will notify affected individuals or affected institutions as "
    "soon as reasonably possible",
    "every institution a breach affected was sent its notice, or a decision not to notify was recorded with its "
    "reason, within its clock (24 hours from awareness)",
    "HECVAT: Incident Handling, Privacy; CAIQ: SEF (breach notification)",
    "incidents",
    breach_notice,
)
