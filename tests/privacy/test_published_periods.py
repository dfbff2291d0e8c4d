"""Every period the platform publishes is enforced by a job (DESIGN, invariant 4).

First the inventory (privacy/periods.py): every period the registry publishes, and the records of processing
print, names the job that enforces it, and that job is registered with the worker and scheduled. Then each
job, run as the worker runs it, in two institutions: rows are aged in the database (stored times rewritten
in SQL, as old rows would have them), exactly those past the period go, those inside it stay, one
institution's run never touches another's rows, and each batch leaves its count in the institution's trail,
never a value.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bookwarden import areas
from bookwarden.access.grants import service as grants
from bookwarden.access.grants.jobs import ENDED_GRANTS
from bookwarden.access.grants.models import GrantScope
from bookwarden.access.roles.notices import add_security_contact
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.core.classification import Category
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import SYSTEM, Principal, PrincipalKind
from bookwarden.crypto.keyring import KeyDestroyed
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import jobs as identity_jobs
from bookwarden.identity import sessions
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import Account, AccountKind, PasswordHistory
from bookwarden.identity.operators.models import OperatorAccount, OperatorSession
from bookwarden.identity.operators.service import create_operator
from bookwarden.jobs.models import JobSchedule
from bookwarden.jobs.service import handler_for
from bookwarden.library import records as library
from bookwarden.library.schemas import LoanCreate, PatronCreate, SearchCreate
from bookwarden.notify import service as notify
from bookwarden.notify.models import MailCategory
from bookwarden.privacy import periods
from bookwarden.privacy.complaints import jobs as complaint_jobs
from bookwarden.privacy.complaints import service as complaints
from bookwarden.privacy.consent import jobs as consent_jobs
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent.models import ConsentMethod
from bookwarden.privacy.registry import POLICIES, CategoryPolicy
from bookwarden.privacy.requests import jobs as request_jobs
from bookwarden.privacy.requests import service as requests
from bookwarden.privacy.requests.models import RequestKind
from bookwarden.privacy.retention import holds
from bookwarden.privacy.retention import jobs as retention_jobs
from bookwarden.privacy.retention import service as retention
from bookwarden.privacy.retention.models import RetentionPolicy
from bookwarden.privacy.subjects import export as subject_export
from bookwarden.tenancy.periods import enforce

OFFICER = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]) | {
    Permission.PRIVACY_HOLDS_MANAGE,
    Permission.PRIVACY_COMPLAINTS_REGISTER,
    Permission.PRIVACY_COMPLAINTS_HANDLE,
    Permission.PRIVACY_REQUESTS_HANDLE,
}
DESK = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
ADMIN = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


def _as(tenant_id, permissions) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset(permissions))


def _age(session, table: str, column: str, row_id, days: float, **also: float) -> None:
    """Move a row's stored times `days` (and each of `also`, column=days) into the past, from the database clock."""
    moves = {column: days, **also}
    assignments = ", ".join(f"{name} = now() - make_interval(secs => :{name})" for name in moves)
    session.execute(
        text(f"UPDATE {table} SET {assignments} WHERE id = :id"),  # noqa: S608 - test table and column names
        {"id": row_id, **{name: d * 86400 for name, d in moves.items()}},
    )


def _ids(session, table: str) -> set[uuid.UUID]:
    return set(session.scalars(text(f"SELECT id FROM {table}")))  # noqa: S608 - test table names


def _enforced(db, tenant_id, job: str) -> list[dict]:
    """The trail's retention.period_enforced events of `job` in this institution's chain, oldest first."""
    with tenant_session(db, tenant_id) as session:
        return list(
            session.scalars(
                text(
                    "SELECT details FROM audit_events WHERE action = 'retention.period_enforced' "
                    "AND details->>'job' = :job ORDER BY seq"
                ),
                {"job": job},
            )
        )


def _patron(session, name="Ann Patron", email="ann@alpha.example") -> uuid.UUID:
    return library.create(session, library.PATRONS, PatronCreate(name=name, email=email)).id


# -- the inventory ---------------------------------------------------------------------------------


def test_every_published_period_has_a_registered_job_that_enforces_it():
    assert periods.problems() == []


def test_the_inventory_names_a_period_without_a_job_and_a_job_the_worker_does_not_know():
    published = {
        **POLICIES,
        Category.READING_LISTS: CategoryPolicy("reading lists", ("keep lists",), ("staff",), "6 months after", 180),
    }
    found = periods.problems(policies=published)
    assert 'reading_lists: publishes "6 months after" and no job enforces it (privacy/periods.py)' in found
    assert "reading_lists: publishes 180 days; its jobs apply none" in found
    assert any(line.startswith("reading_list_items.note: holds reading_lists") for line in found)

    mail = next(p for p in periods.PERIODS if p.category is Category.CORRESPONDENCE)
    rest = [p for p in periods.PERIODS if p is not mail]
    assert 'correspondence: publishes "90 days after sending" and no job enforces it (privacy/periods.py)' in (
        periods.problems(entries=rest)
    )
    unknown = dataclasses.replace(mail, job="notify.nobody_runs_this")
    assert "notify.nobody_runs_this: enforces correspondence but no handler is registered with the worker" in (
        periods.problems(entries=[*rest, unknown])
    )
    shorter = dataclasses.replace(mail, keep_days=30)
    assert "correspondence: publishes 90 days; its jobs apply [30]" in periods.problems(entries=[*rest, shorter])
    misquoted = dataclasses.replace(mail, published="30 days after sending")
    assert any("is not what its retention says" in line for line in periods.problems(entries=[*rest, misquoted]))


def test_every_enforcing_job_is_scheduled_by_the_worker(db):
    for module in areas.modules("jobs"):  # as the worker does at every start
        module.declare_schedules(db)
    with platform_session(db) as session:
        scheduled = set(session.scalars(select(JobSchedule.kind)))
    assert periods.jobs() <= scheduled, periods.jobs() - scheduled


def test_the_institutions_own_periods_that_the_records_print_are_the_daily_purges():
    for category in retention.GOVERNS:
        assert any(p.job == retention.PURGE_JOB for p in periods.enforcing(category)), category


# -- mail: 90 days after sending ---------------------------------------------------------------------


def _mail(session, state: str, days: float) -> uuid.UUID:
    message = notify.queue_mail(
        session,
        to="reader@alpha.example",
        subject="Your loan is due",
        template="generic.txt",
        context={"recipient_name": "Reader", "message": "Middlemarch is due back on Friday.", "institution": "Alpha"},
        category=MailCategory.SERVICE,
    )
    if state == "sent":
        session.execute(
            text("UPDATE outbox SET status = 'sent', sent_at = now(), message_id = '<m@bookwarden>' WHERE id = :id"),
            {"id": message.id},
        )
        _age(session, "outbox", "sent_at", message.id, days, created_at=days + 1)
    elif state == "failed":
        session.execute(text("UPDATE outbox SET status = 'failed' WHERE id = :id"), {"id": message.id})
        _age(session, "outbox", "created_at", message.id, days)
    else:
        _age(session, "outbox", "created_at", message.id, days)
    return message.id


def test_mail_goes_90_days_after_it_was_sent_in_each_institution_on_its_own(db, tenant, other_tenant):
    made = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            made[t.id] = {
                "gone": {_mail(session, "sent", 91), _mail(session, "failed", 91)},
                "kept": {_mail(session, "sent", 89), _mail(session, "failed", 89), _mail(session, "queued", 200)},
            }

    enforce(db, retention_jobs.OLD_MAIL, actor=SYSTEM, tenants=[tenant.id], batch=1)
    with tenant_session(db, other_tenant.id) as session:
        assert made[other_tenant.id]["gone"] <= _ids(session, "outbox")  # not its institution's run
    handler_for(notify.FORGET_OLD_MAIL)(db, {})  # the daily job: every institution

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            left = _ids(session, "outbox")
        assert left.isdisjoint(made[t.id]["gone"]) and made[t.id]["kept"] <= left
        events = _enforced(db, t.id, notify.FORGET_OLD_MAIL)
        assert sum(e["count"] for e in events) == 2 and all(e["table"] == "outbox" for e in events)
        assert {i for e in events for i in e["ids"]} == {str(i) for i in made[t.id]["gone"]}
        assert all(e["keep_days"] == 90 for e in events)
        assert "reader@" not in json.dumps(events) and "Middlemarch" not in json.dumps(events)
    assert len(_enforced(db, tenant.id, notify.FORGET_OLD_MAIL)) == 2  # batches of one, each with its event

    handler_for(notify.FORGET_OLD_MAIL)(db, {})  # idempotent: nothing more to remove, nothing recorded
    assert len(_enforced(db, other_tenant.id, notify.FORGET_OLD_MAIL)) == 1


# -- complaints: 3 years after the answer -------------------------------------------------------------


def _complaint(session, patron_id, *, answered_days: float | None, opened_days: float = 0) -> uuid.UUID:
    officer = _as(session.tenant_id, OFFICER)
    made = complaints.register_for_patron(
        session, officer, patron_id, subject="Screen showed my loans", body="Everyone at the desk saw my loans."
    )
    if opened_days:
        _age(session, "complaints", "created_at", made.id, opened_days,
             ack_due_at=opened_days - 1, at_risk_at=opened_days - 35, due_at=opened_days - 45)  # fmt: skip
    if answered_days is not None:
        complaints.answer(session, officer, made.id, "The screen now faces away from the queue.")
        _age(session, "complaints", "answered_at", made.id, answered_days)
    return made.id


def test_complaints_go_3_years_after_their_answer_unless_a_hold_keeps_them(db, tenant, other_tenant):
    made = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            reader, held = _patron(session), _patron(session, "Held Patron", "held@alpha.example")
            holds.place(session, _as(t.id, OFFICER), reason="Case 2026-7", patron_id=held)
            made[t.id] = {
                "gone": {_complaint(session, reader, answered_days=1096)},
                "kept": {
                    _complaint(session, reader, answered_days=1094),
                    _complaint(session, reader, answered_days=None, opened_days=2000),  # open: never by age
                    _complaint(session, held, answered_days=1500),  # the patron's data is held
                },
            }

    enforce(db, complaint_jobs.ANSWERED_COMPLAINTS, actor=SYSTEM, tenants=[other_tenant.id])
    with tenant_session(db, tenant.id) as session:
        assert made[tenant.id]["gone"] <= _ids(session, "complaints")
    handler_for(complaints.RETENTION_JOB)(db, {})

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            left = _ids(session, "complaints")
        assert left.isdisjoint(made[t.id]["gone"]) and made[t.id]["kept"] <= left
        (event,) = _enforced(db, t.id, complaints.RETENTION_JOB)
        assert (event["count"], event["keep_days"], event["ids"]) == (1, 1095, [str(*made[t.id]["gone"])])
        assert "desk" not in json.dumps(event)


# -- data-subject requests: 3 years after completed or denied ------------------------------------------


def _request(session, patron_id, *, closed: str | None, days: float = 0) -> uuid.UUID:
    officer = _as(session.tenant_id, OFFICER)
    if closed == "completed":
        made = requests.register_for_patron(
            session, _as(session.tenant_id, DESK), patron_id, RequestKind.OBJECTION,
            objection_scope="third_party_disclosure",
        )  # fmt: skip
        requests.decide(session, officer, made.id, requests.Decision.APPROVE)
        requests.start(session, officer, made.id)
        requests.complete(session, officer, made.id)
        _age(session, "privacy_requests", "completed_at", made.id, days)
    elif closed == "denied":
        made = requests.register_for_patron(session, _as(session.tenant_id, DESK), patron_id, RequestKind.ACCESS)
        requests.decide(session, officer, made.id, requests.Decision.DENY, "held by another institution")
        _age(session, "privacy_requests", "decided_at", made.id, days)
    else:
        made = requests.register_for_patron(session, _as(session.tenant_id, DESK), patron_id, RequestKind.ACCESS)
        _age(session, "privacy_requests", "received_at", made.id, 2000, due_at=1970, verified_at=2000)
    return made.id


def test_requests_go_3_years_after_they_closed_unless_a_hold_keeps_them(db, tenant, other_tenant):
    made = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            reader, held = _patron(session), _patron(session, "Held Patron", "held@alpha.example")
            made[t.id] = {
                "gone": {
                    _request(session, reader, closed="completed", days=1096),
                    _request(session, reader, closed="denied", days=1096),
                },
                "kept": {
                    _request(session, reader, closed="completed", days=1094),
                    _request(session, reader, closed="denied", days=1094),
                    _request(session, reader, closed=None),  # open, and overdue: never by age
                    _request(session, held, closed="denied", days=1500),
                },
            }
            holds.place(session, _as(t.id, OFFICER), reason="Case 2026-8", patron_id=held)

    enforce(db, request_jobs.CLOSED_REQUESTS, actor=SYSTEM, tenants=[tenant.id])
    with tenant_session(db, other_tenant.id) as session:
        assert made[other_tenant.id]["gone"] <= _ids(session, "privacy_requests")
    handler_for(requests.RETENTION_JOB)(db, {})

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            left = _ids(session, "privacy_requests")
        assert left.isdisjoint(made[t.id]["gone"]) and made[t.id]["kept"] <= left
        (event,) = _enforced(db, t.id, requests.RETENTION_JOB)
        assert event["count"] == 2 and set(event["ids"]) == {str(i) for i in made[t.id]["gone"]}
        assert "another institution" not in json.dumps(event)


# -- consent records: 3 years after withdrawal -------------------------------------------------------


def test_consent_records_go_3_years_after_their_withdrawal(committed_db, committed_tenant, superuser_conn):
    staff = ConsentMethod.STAFF
    on, off = (
        [consent.Choice(consent.Channel.EMAIL, consent.Topic.NEWSLETTERS, subscribed)] for subscribed in (True, False)
    )
    events = [consent.Choice(consent.Channel.EMAIL, consent.Topic.EVENTS, True)]

    def history(session, patron_id, *steps) -> list[uuid.UUID]:
        written = []
        for step in steps:
            written += consent.set_preferences(session, SYSTEM, patron_id, step, method=staff, notice_version="v3")
        return [r.id for r in written]

    def age(ids, *days) -> None:
        for record_id, back in zip(ids, days, strict=True):
            superuser_conn.execute(
                "UPDATE consent_records SET recorded_at = now() - make_interval(days => %s) WHERE id = %s",
                (back, record_id),
            )

    made = {}
    for tenant_id in (committed_tenant(), committed_tenant()):
        with tenant_session(committed_db, tenant_id) as session:
            withdrawn_long_ago, withdrawn_lately, came_back, held, still_agreed = (
                _patron(session, f"Patron {n}", f"p{n}@alpha.example") for n in range(5)
            )
            gone = history(session, withdrawn_long_ago, on, off)
            kept = history(session, withdrawn_lately, on, off)
            again = history(session, came_back, on, off, on)
            held_ids = history(session, held, on, off)
            agreed = history(session, still_agreed, events)
            holds.place(session, _as(tenant_id, OFFICER), reason="Case 2026-9", patron_id=held)
        age(gone, 1200, 1096)
        age(kept, 1200, 1094)
        age(again, 1500, 1200, 100)
        age(held_ids, 1200, 1100)
        age(agreed, 2000)
        made[tenant_id] = {
            "gone": {*gone, *again[:2]},
            "kept": {*kept, again[2], *held_ids, *agreed},
            "patrons": (withdrawn_long_ago, came_back),
        }

    first, second = made
    enforce(committed_db, consent_jobs.WITHDRAWN_CONSENT, actor=SYSTEM, tenants=[first], batch=2)
    with tenant_session(committed_db, second) as session:
        assert made[second]["gone"] <= _ids(session, "consent_records")
    handler_for(consent.RETENTION_JOB)(committed_db, {})

    newsletters = (consent.Channel.EMAIL, consent.Topic.NEWSLETTERS)
    for tenant_id, expected in made.items():
        with tenant_session(committed_db, tenant_id) as session:
            left = _ids(session, "consent_records")
            withdrawn_long_ago, came_back = expected["patrons"]
            # What each patron chose is what it was: off with no record left, on after saying yes again.
            assert not consent.is_subscribed(session, withdrawn_long_ago, *newsletters)
            assert consent.is_subscribed(session, came_back, *newsletters)
        assert left.isdisjoint(expected["gone"]) and expected["kept"] <= left
        found = _enforced(committed_db, tenant_id, consent.RETENTION_JOB)
        assert sum(e["count"] for e in found) == 4 and all(e["keep_days"] == 1095 for e in found)
    assert len(_enforced(committed_db, first, consent.RETENTION_JOB)) == 2  # batches of two


# -- operator grants: 2 years after the grant ended ----------------------------------------------------


def test_operator_grants_go_2_years_after_they_ended(db, tenant, other_tenant):
    operator = Principal(
        PrincipalKind.OPERATOR_TOKEN, uuid.uuid4(), None, BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_SUPPORT]
    )

    def ask(t) -> uuid.UUID:
        return grants.request_grant(
            db, operator, t.id, scope=GrantScope.READ, justification="patron Ann cannot sign in, INC-42",
            ticket="INC-42", duration=timedelta(hours=2),
        ).id  # fmt: skip

    made = {}
    for t in (tenant, other_tenant):
        denied, revoked, lately, live = (ask(t) for _ in range(4))
        with tenant_session(db, t.id) as session:
            grants.deny_grant(session, _as(t.id, ADMIN), denied)
            grants.revoke_grant(session, _as(t.id, ADMIN), revoked)
            grants.revoke_grant(session, _as(t.id, ADMIN), lately)
            _age(session, "operator_grants", "decided_at", denied, 731)
            _age(session, "operator_grants", "ended_at", revoked, 731)
            _age(session, "operator_grants", "ended_at", lately, 729)
        made[t.id] = {"gone": {denied, revoked}, "kept": {lately, live}}

    enforce(db, ENDED_GRANTS, actor=SYSTEM, tenants=[tenant.id])
    with tenant_session(db, other_tenant.id) as session:
        assert made[other_tenant.id]["gone"] <= _ids(session, "operator_grants")
    handler_for(grants.FORGET_ENDED_JOB)(db, {})

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            left = _ids(session, "operator_grants")
        assert left.isdisjoint(made[t.id]["gone"]) and made[t.id]["kept"] <= left
        (event,) = _enforced(db, t.id, grants.FORGET_ENDED_JOB)
        assert event["count"] == 2 and event["keep_days"] == 730 and "Ann" not in json.dumps(event)


# -- accounts: 2 years without a sign-in; old password hashes: the policy's history -------------------


def _account(session, username: str, *, kind=AccountKind.STAFF, created_days: float = 0) -> Account:
    account = accounts.create_account(session, _as(session.tenant_id, ADMIN), kind=kind, username=username)
    if created_days:
        _age(session, "accounts", "created_at", account.id, created_days)
    return account


def test_accounts_go_after_2_years_without_a_sign_in_with_their_key(db, tenant, other_tenant):
    made = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            add_security_contact(session, f"soc@{t.slug}.example")
            silent, signs_in, new_password, portal = (
                _account(session, name, created_days=800) for name in ("silent", "kim", "lee", "ann")
            )
            sessions.create_session(
                session, signs_in.id, source_address="10.0.0.1", user_agent="t", second_factor_pending=False
            )
            assert session.scalar(select(Account.last_signed_in_at).where(Account.id == signs_in.id)) is not None
            _age(session, "accounts", "last_signed_in_at", signs_in.id, 729)
            _age(session, "accounts", "password_changed_at", new_password.id, 100)
            # A patron's own account goes with the patron (their inactivity counts its sign-ins).
            session.execute(
                text("UPDATE accounts SET patron_id = :p WHERE id = :id"), {"p": _patron(session), "id": portal.id}
            )
            made[t.id] = {"gone": {silent.id}, "kept": {signs_in.id, new_password.id, portal.id}}

    enforce(db, identity_jobs.INACTIVE_ACCOUNTS, actor=SYSTEM, tenants=[tenant.id])
    with tenant_session(db, other_tenant.id) as session:
        assert made[other_tenant.id]["gone"] <= _ids(session, "accounts")
    handler_for(identity_jobs.REMOVE_INACTIVE)(db, {})

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            left = _ids(session, "accounts")
            (silent,) = made[t.id]["gone"]
            with pytest.raises(KeyDestroyed):
                session.keyring.subject_key(t.id, silent)
            deleted = session.execute(
                text("SELECT actor_kind, details FROM audit_events WHERE action = :a AND target_id = :id"),
                {"a": "account.deleted", "id": silent},
            ).one()
        assert left.isdisjoint(made[t.id]["gone"]) and made[t.id]["kept"] <= left
        assert deleted.actor_kind == "system" and deleted.details["inactive_days"] == 730
        (event,) = _enforced(db, t.id, identity_jobs.REMOVE_INACTIVE)
        assert event["ids"] == [str(silent)] and event["keep_days"] == 730


def test_old_password_hashes_are_kept_only_as_far_back_as_the_policys_history(db, tenant, other_tenant):
    made = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            staff = accounts.create_account(session, _as(t.id, ADMIN), kind=AccountKind.STAFF, username="kim")
            patron = accounts.create_account(session, _as(t.id, ADMIN), kind=AccountKind.PATRON, username="ann")
            rows = {}
            for account, stored in ((staff, 7), (patron, 2)):
                rows[account.id] = [uuid.uuid4() for _ in range(stored)]  # newest first
                for age_days, row_id in enumerate(rows[account.id], start=1):
                    session.add(
                        PasswordHistory(
                            tenant_id=t.id, id=row_id, account_id=account.id, password_hash=f"$argon2id$old{age_days}"
                        )
                    )
                    session.flush()
                    _age(session, "password_history", "created_at", row_id, age_days * 30)
        # Staff: history 5 counts the current password first, so 4 old hashes; patrons: history 0, none.
        made[t.id] = {"kept": set(rows[staff.id][:4]), "gone": set(rows[staff.id][4:]) | set(rows[patron.id])}

    enforce(db, identity_jobs.PASSWORD_HISTORY, actor=SYSTEM, tenants=[other_tenant.id])
    with tenant_session(db, tenant.id) as session:
        assert made[tenant.id]["gone"] <= _ids(session, "password_history")
    handler_for(identity_jobs.TRIM_HISTORY)(db, {})

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            assert _ids(session, "password_history") == made[t.id]["kept"]
        (event,) = _enforced(db, t.id, identity_jobs.TRIM_HISTORY)
        assert event["count"] == 5 and "$argon2id" not in json.dumps(event)


# -- sign-in sessions: 1 day after they end, an institution's and an operator's ---------------------------


def test_sessions_go_a_day_after_they_end_operators_too_and_the_trail_counts_them(db, tenant, other_tenant):
    with platform_session(db) as session:
        create_operator(session, db.keyring, db.master, "ops.kim", "operator_support")
        operator = session.scalars(select(OperatorAccount).where(OperatorAccount.username == "ops.kim")).one()
        ops = {}
        for name, ended_days in (("gone", 2), ("kept", 0.5), ("live", None)):
            row = OperatorSession(
                account_id=operator.id, token_hash=uuid.uuid4().bytes, source_address="10.9.9.9", user_agent="t",
                idle_expires_at=text("now() + interval '30 minutes'"),
                absolute_expires_at=text("now() + interval '12 hours'"),
            )  # fmt: skip
            session.add(row)
            session.flush()
            if ended_days is not None:
                _age(session, "operator_sessions", "idle_expires_at", row.id, ended_days)
            ops[name] = row.id
    kept = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            account = accounts.create_account(session, _as(t.id, ADMIN), kind=AccountKind.STAFF, username="kim")
            rows = [
                sessions.create_session(
                    session, account.id, source_address="10.0.0.1", user_agent="t", second_factor_pending=False
                )[0]
                for _ in range(3)
            ]
            _age(session, "sessions", "created_at", rows[0].id, 3, idle_expires_at=2, last_seen_at=2.1)
            _age(session, "sessions", "created_at", rows[1].id, 1, idle_expires_at=0.5, last_seen_at=0.6)
            kept[t.id] = {rows[1].id, rows[2].id}

    identity_jobs.purge_expired(db)

    with platform_session(db) as session:
        assert set(session.scalars(select(OperatorSession.id))) == {ops["kept"], ops["live"]}
    (event,) = _enforced(db, PLATFORM_CHAIN, identity_jobs.PURGE_EXPIRED)  # the platform's own trail
    assert (event["table"], event["count"], event["keep_days"]) == ("operator_sessions", 1, 1)
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            assert _ids(session, "sessions") == kept[t.id]
        (event,) = _enforced(db, t.id, identity_jobs.PURGE_EXPIRED)
        assert (event["table"], event["count"], event["keep_days"]) == ("sessions", 1, 1)
        assert "10.0.0.1" not in json.dumps(event)


# -- the retention purge: loans, searches, inactive patrons, each institution's own period -----------------


def _loan(session, patron_id, returned_days: float) -> uuid.UUID:
    body = LoanCreate(patron_id=patron_id, item_id="i-1", item_title="Middlemarch",
                      borrowed_at="2020-01-01T00:00:00Z", due_at="2020-02-01T00:00:00Z")  # fmt: skip
    made = library.create(session, library.LOANS, body).id
    _age(session, "loans", "returned_at", made, returned_days)
    return made


def _search(session, patron_id, days: float) -> uuid.UUID:
    made = library.create(session, library.SEARCHES, SearchCreate(patron_id=patron_id, query="rare herbals")).id
    _age(session, "searches", "searched_at", made, days)
    return made


def _idle_patron(session, days: float, *, signed_in_days: float | None = None) -> uuid.UUID:
    """A patron registered `days` ago with no activity since; with `signed_in_days`, its account signed in
    then (the session that showed it is long gone)."""
    made = _patron(session, "Quiet Patron", None)
    _age(session, "patrons", "created_at", made, days)
    if signed_in_days is not None:
        account = _account(session, f"p-{made.hex[:8]}", kind=AccountKind.PATRON)
        session.execute(text("UPDATE accounts SET patron_id = :p WHERE id = :a"), {"p": made, "a": account.id})
        _age(session, "accounts", "last_signed_in_at", account.id, signed_in_days, created_at=days)
    return made


def test_the_daily_purge_applies_each_institutions_periods_to_its_own_rows_only(db, tenant, other_tenant):
    """Loans a year after return, searches after 90 days (or the institution's own 30), patrons after
    2 years without activity; a sign-in of the patron's account is activity, after its session is gone."""
    made = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            reader = _patron(session)
            made[t.id] = {
                "loans": (_loan(session, reader, 366), _loan(session, reader, 364)),
                "searches": tuple(_search(session, reader, days) for days in (91, 31, 29)),
                "patrons": (
                    _idle_patron(session, 731),
                    _idle_patron(session, 729),
                    _idle_patron(session, 900, signed_in_days=10),
                ),
            }
            _age(session, "patrons", "created_at", reader, 5)
    with tenant_session(db, other_tenant.id) as session:  # the institution's own period, printed in its records
        session.add(RetentionPolicy(tenant_id=other_tenant.id, category="searches", keep_days=30,
                                    changed_by=uuid.uuid4()))  # fmt: skip

    retention.run_purge(db, tenant.id)
    with tenant_session(db, other_tenant.id) as session:
        assert set(made[other_tenant.id]["loans"]) <= _ids(session, "loans")  # one institution's run
    handler_for(retention.PURGE_JOB)(db, {})

    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            loans, searches, patrons = _ids(session, "loans"), _ids(session, "searches"), _ids(session, "patrons")
        old_loan, recent_loan = made[t.id]["loans"]
        assert old_loan not in loans and recent_loan in loans
        past_90, past_30, recent = made[t.id]["searches"]
        assert past_90 not in searches and recent in searches
        assert (past_30 in searches) == (t is tenant)  # 90 days at alpha; beta keeps its searches 30 days
        inactive, lately, signed_in = made[t.id]["patrons"]
        assert inactive not in patrons and {lately, signed_in} <= patrons


def test_access_packages_go_when_their_link_expires_in_each_institution(db, tenant, other_tenant):
    made = {}
    for t in (tenant, other_tenant):
        with tenant_session(db, t.id) as session:
            reader = _patron(session)
            old, recent = (subject_export.build_package(session, reader).id for _ in range(2))
            _age(session, "subject_export_packages", "created_at", old, 8, expires_at=1)
            _age(session, "subject_export_packages", "created_at", recent, 6)
        made[t.id] = (old, recent)
    handler_for(subject_export.PURGE)(db, {})
    for t in (tenant, other_tenant):
        old, recent = made[t.id]
        with tenant_session(db, t.id) as session:
            assert _ids(session, "subject_export_packages") == {recent}
            with pytest.raises(KeyDestroyed):
                session.keyring.subject_key(t.id, old)
            session.keyring.subject_key(t.id, recent)


def test_consent_history_stays_append_only_for_the_application(db, tenant):
    from sqlalchemy.exc import ProgrammingError

    with tenant_session(db, tenant.id) as session:
        patron_id = _patron(session)
        on = [consent.Choice(consent.Channel.EMAIL, consent.Topic.NEWSLETTERS, True)]
        consent.set_preferences(session, SYSTEM, patron_id, on, method=ConsentMethod.STAFF, notice_version="v3")
    with pytest.raises(ProgrammingError, match="permission denied"), tenant_session(db, tenant.id) as session:
        session.execute(text("DELETE FROM consent_records"))
    with platform_session(db) as session:  # no institution in context: the function removes nothing anywhere
        assert session.execute(text("SELECT * FROM bookwarden_forget_withdrawn_consent(100)")).all() == []
    with tenant_session(db, tenant.id) as session:
        assert len(_ids(session, "consent_records")) == 1
