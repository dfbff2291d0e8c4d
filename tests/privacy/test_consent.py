"""Communication preferences, consent records, cookie choices and objections: a patron's choices,
made in the portal or by staff on their behalf, kept as an append-only history whose latest row is
the current state; service messages cannot be turned off; no cookie choice means strictly necessary
only; every read and change of someone's choices is in the audit trail."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import select, text

from bookwarden.core.errors import Conflict, InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_WRITE, BuiltinRole, Permission
from bookwarden.db.session import platform_session
from bookwarden.identity import passwords
from bookwarden.identity.models import AccountKind
from bookwarden.privacy.consent import objections
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent.models import ConsentMethod, ConsentRecord
from bookwarden.privacy.consent.service import Channel, Choice, Topic
from tests.helpers import patron_deleted_for_good
from tests.privacy.test_complaints import PASSWORD, _account, _patron, _principal

DESK = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
ME = "/api/v1/privacy/me"
NEWSLETTERS_BY_EMAIL = "communication:email:newsletters"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _signed_in_patron(browser, in_tenant, tenant, username="ann"):
    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        _account(session, username, kind=AccountKind.PATRON, patron_id=patron_id, roles=[BuiltinRole.PATRON])
    client = browser()
    login = {"institution": tenant.slug, "username": username, "password": PASSWORD}
    assert client.post("/api/v1/auth/login", json=login).status_code == 200
    return client, patron_id


def _state(preferences: list[dict], channel: str, topic: str) -> dict:
    return next(p for p in preferences if p["channel"] == channel and p["topic"] == topic)


def _events(session, patron_id) -> list[tuple[str, dict]]:
    rows = session.execute(
        text("SELECT action, details FROM audit_events WHERE target_id = :p AND action LIKE 'privacy.%' ORDER BY seq"),
        {"p": patron_id},
    )
    return [tuple(row) for row in rows]


# -- preferences ---------------------------------------------------------------------------------


def test_optional_topics_are_off_until_chosen_and_service_messages_are_always_on(browser, in_tenant, tenant):
    client, patron_id = _signed_in_patron(browser, in_tenant, tenant)

    shown = client.get(f"{ME}/preferences")

    assert shown.status_code == 200, shown.text
    preferences = shown.json()["preferences"]
    assert len(preferences) == len(Channel) * len(Topic)
    newsletters = _state(preferences, "email", "newsletters")
    assert (newsletters["optional"], newsletters["subscribed"], newsletters["since"]) == (True, False, None)
    due = _state(preferences, "email", "due_date_notices")
    assert (due["optional"], due["subscribed"]) == (False, True)
    assert "loan cannot work without them" in due["why_always_on"]
    assert shown.json()["objections"] == []
    with in_tenant(tenant) as session:
        assert [action for action, _ in _events(session, patron_id)] == ["privacy.preferences.viewed"]


def test_a_patron_opts_in_and_out_and_the_history_keeps_both(browser, in_tenant, tenant):
    client, patron_id = _signed_in_patron(browser, in_tenant, tenant)
    yes = {"choices": [{"channel": "email", "topic": "newsletters", "subscribed": True}], "notice_version": "2026-03"}
    no = {"choices": [{"channel": "email", "topic": "newsletters", "subscribed": False}], "notice_version": "2026-03"}

    given = client.put(f"{ME}/preferences", json=yes)
    again = client.put(f"{ME}/preferences", json=yes)  # the same choice: nothing new recorded
    withdrawn = client.put(f"{ME}/preferences", json=no)

    assert given.status_code == again.status_code == withdrawn.status_code == 200, given.text
    assert _state(given.json()["preferences"], "email", "newsletters")["subscribed"] is True
    assert _state(given.json()["preferences"], "sms", "newsletters")["subscribed"] is False  # per channel
    assert _state(withdrawn.json()["preferences"], "email", "newsletters")["subscribed"] is False
    history = client.get(f"{ME}/consents").json()["items"]
    assert [(h["purpose"], h["given"], h["method"], h["notice_version"]) for h in history] == [
        (NEWSLETTERS_BY_EMAIL, True, "portal", "2026-03"),
        (NEWSLETTERS_BY_EMAIL, False, "portal", "2026-03"),
    ]
    with in_tenant(tenant) as session:
        assert not consent.is_subscribed(session, patron_id, Channel.EMAIL, Topic.NEWSLETTERS)
        changes = [d for action, d in _events(session, patron_id) if action == "privacy.preferences.changed"]
    assert [(c["given"], c["withdrawn"], c["unchanged"]) for c in changes] == [
        ([NEWSLETTERS_BY_EMAIL], [], 0),
        ([], [], 1),
        ([], [NEWSLETTERS_BY_EMAIL], 0),
    ]


def test_service_messages_cannot_be_turned_off_and_a_refusal_records_nothing(browser, in_tenant, tenant):
    client, _ = _signed_in_patron(browser, in_tenant, tenant)
    body = {
        "choices": [
            {"channel": "email", "topic": "events", "subscribed": True},
            {"channel": "email", "topic": "due_date_notices", "subscribed": False},
        ],
        "notice_version": "2026-03",
    }

    response = client.put(f"{ME}/preferences", json=body)

    assert response.status_code == 409
    assert "service messages cannot be turned off" in response.json()["detail"]
    assert "due_date_notices" in response.json()["detail"]
    with in_tenant(tenant) as session:
        assert session.scalar(select(ConsentRecord.id)) is None  # not even the events choice


def test_agreeing_names_the_notice_shown(db, in_tenant, tenant):
    with in_tenant(tenant) as session, pytest.raises(InvalidInput, match="notice_version"):
        patron_id = _patron(session)
        consent.set_preferences(
            session,
            _principal(tenant.id, DESK),
            patron_id,
            [Choice(Channel.SMS, Topic.EVENTS, True)],
            method=ConsentMethod.STAFF,
            notice_version=None,
        )


def test_staff_record_a_patrons_choice_from_a_signed_form(client_for, tenant, in_tenant):
    desk = client_for(tenant, permissions=DESK | LIBRARY_WRITE)
    patron = desk.post("/api/v1/patrons", json={"name": "Bo Patron", "email": "bo@alpha.example"}).json()
    url = f"/api/v1/privacy/patrons/{patron['id']}/preferences"
    body = {
        "choices": [{"channel": "post", "topic": "events", "subscribed": True}],
        "notice_version": "paper-2025",
        "method": "form",
    }

    changed = desk.put(url, json=body)

    assert changed.status_code == 200, changed.text
    assert _state(changed.json()["preferences"], "post", "events")["method"] == "form"
    history = desk.get(f"/api/v1/privacy/patrons/{patron['id']}/consents").json()["items"]
    assert [(h["purpose"], h["method"], h["notice_version"]) for h in history] == [
        ("communication:post:events", "form", "paper-2025")
    ]
    assert desk.get(f"/api/v1/privacy/patrons/{uuid.uuid4()}/preferences").status_code == 404
    # A patron token cannot reach another patron's preferences; a token is no patron account either.
    patron_token = client_for(tenant, permissions={Permission.SELF_SERVICE})
    assert patron_token.get(url).status_code == 403
    assert patron_token.get(f"{ME}/preferences").status_code == 403


def test_the_history_is_append_only_for_every_role(db, in_tenant, tenant, owner_conn):
    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        consent.set_preferences(
            session,
            _principal(tenant.id, DESK),
            patron_id,
            [Choice(Channel.EMAIL, Topic.SURVEYS, True)],
            method=ConsentMethod.STAFF,
            notice_version="v1",
        )
    with in_tenant(tenant) as session:
        # The application role holds no UPDATE or DELETE on the histories.
        for statement in ("UPDATE consent_records SET given = false", "DELETE FROM consent_records"):
            with pytest.raises(Exception, match="permission denied"), session.begin_nested():
                session.execute(text(statement))
    # Not even the owner may rewrite a choice: the trigger refuses it (shown on a row the owner writes,
    # since rows written through `db` are not committed).
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        _owner_rewrites_a_choice(owner_conn)


def _owner_rewrites_a_choice(owner_conn) -> None:
    with owner_conn.transaction(force_rollback=True):
        tenant_id = owner_conn.execute(
            "INSERT INTO tenants (id, slug, name, status) VALUES (gen_random_uuid(), 'owner-probe', 'Probe', 'active') "
            "RETURNING id"
        ).fetchone()[0]
        owner_conn.execute("SELECT set_config('bookwarden.tenant_id', %s, true)", (str(tenant_id),))
        patron_id = owner_conn.execute(
            "INSERT INTO patrons (tenant_id, id, name, status) VALUES (%s, gen_random_uuid(), '\\x00', 'active') "
            "RETURNING id",
            (tenant_id,),
        ).fetchone()[0]
        owner_conn.execute(
            "INSERT INTO consent_records (tenant_id, id, patron_id, purpose, given, method, notice_version) "
            "VALUES (%s, gen_random_uuid(), %s, 'communication:email:events', true, 'staff', 'v1')",
            (tenant_id, patron_id),
        )
        owner_conn.execute("UPDATE consent_records SET given = false WHERE tenant_id = %s", (tenant_id,))


def test_a_patrons_choices_leave_with_the_patron(db, client_for, tenant, in_tenant):
    staff = client_for(tenant, permissions=DESK | LIBRARY_WRITE | {Permission.PATRONS_WRITE})
    patron = staff.post("/api/v1/patrons", json={"name": "Gone Soon"}).json()
    patron_id = uuid.UUID(patron["id"])
    with in_tenant(tenant) as session:
        consent.set_preferences(
            session,
            _principal(tenant.id, DESK),
            patron_id,
            [Choice(Channel.EMAIL, Topic.EVENTS, True)],
            method=ConsentMethod.STAFF,
            notice_version="v1",
        )
        objections.record_objection(session, patron_id, "third_party_disclosure", actor=_principal(tenant.id, DESK))
        consent.record_cookie_choice(
            session, uuid.uuid4(), analytics=True, preferences=False, notice_version="c1", patron_id=patron_id
        )

    checker = client_for(tenant, permissions=DESK | LIBRARY_WRITE | {Permission.PATRONS_WRITE})
    patron_deleted_for_good(db, tenant.id, staff, checker, patron_id)

    with in_tenant(tenant) as session:
        for table in ("consent_records", "objections", "cookie_choices"):
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table  # noqa: S608


# -- cookie choices ------------------------------------------------------------------------------


def test_no_cookie_choice_means_strictly_necessary_only(app, tenant):
    from fastapi.testclient import TestClient

    visitor = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)

    shown = visitor.get(f"/api/v1/portal/{tenant.slug}/cookie-choice")

    assert shown.status_code == 200, shown.text
    assert shown.json() == {
        "strictly_necessary": True,
        "analytics": False,
        "preferences": False,
        "chosen": False,
        "notice_version": None,
        "recorded_at": None,
        "privacy_notice": None,  # the institution has published no notice here
    }
    assert "bw_visitor" not in shown.cookies  # nothing is set before a choice


def test_the_open_cookie_banner_has_a_budget_per_network_address(app, tenant, in_tenant, monkeypatch, db):
    from fastapi.testclient import TestClient

    from bookwarden.identity import throttle
    from tests.helpers import fresh_address

    monkeypatch.setattr(throttle, "COOKIE_CHOICE", throttle.Budget("cookie_choice", 3, timedelta(minutes=10)))
    campus, elsewhere = fresh_address(), fresh_address()
    url = f"/api/v1/portal/{tenant.slug}/cookie-choice"
    body = {"analytics": False, "preferences": False, "notice_version": "cookies-v2"}

    def browser(address):  # a fresh browser each time: many people behind one campus address
        return TestClient(app, base_url="https://testserver", client=(address, 50000), raise_server_exceptions=False)

    spent = [browser(campus).put(url, json=body).status_code for _ in range(3)]
    refused = browser(campus).put(url, json=body)

    assert spent == [200, 200, 200]
    assert refused.status_code == 429 and refused.json()["type"].endswith("too-many-attempts")
    assert 0 < int(refused.headers["Retry-After"]) <= 600
    assert "sign-in" not in refused.json()["detail"]
    assert browser(elsewhere).put(url, json=body).status_code == 200  # another address: its own budget
    with in_tenant(tenant) as session:
        recorded = session.execute(text("SELECT count(*) FROM cookie_choices")).scalar_one()
    assert recorded == 4  # the refused one wrote nothing
    with platform_session(db) as session:  # the budget names no address, only its keyed hash
        keys = session.execute(text("SELECT key FROM rate_budgets WHERE purpose = 'cookie_choice'")).scalars().all()
        assert len(keys) == 2 and all(campus.encode() not in bytes(k) for k in keys)
        session.execute(text("UPDATE rate_budgets SET window_start = window_start - interval '10 minutes'"))
    assert browser(campus).put(url, json=body).status_code == 200  # a new window: a fresh budget
    with platform_session(db) as session:
        assert throttle.forget_spent_budgets(session, (throttle.COOKIE_CHOICE,)) == 1  # the other's window ended


def test_a_visitors_cookie_choice_is_recorded_with_its_notice_and_remembered(app, tenant, in_tenant):
    from fastapi.testclient import TestClient

    visitor = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
    other = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
    url = f"/api/v1/portal/{tenant.slug}/cookie-choice"

    chosen = visitor.put(url, json={"analytics": True, "preferences": False, "notice_version": "cookies-v2"})
    again = visitor.put(url, json={"analytics": True, "preferences": False, "notice_version": "cookies-v2"})
    later = visitor.put(url, json={"analytics": False, "preferences": True, "notice_version": "cookies-v2"})

    assert chosen.status_code == again.status_code == later.status_code == 200, chosen.text
    assert again.json()["recorded_at"] == chosen.json()["recorded_at"]  # the same choice: no second row
    visitor_id = uuid.UUID(visitor.cookies["bw_visitor"])
    now = visitor.get(url).json()
    assert (now["analytics"], now["preferences"], now["chosen"], now["notice_version"]) == (
        False,
        True,
        True,
        "cookies-v2",
    )
    assert other.get(url).json()["chosen"] is False  # another browser has chosen nothing
    assert other.get("/api/v1/portal/no-such-library/cookie-choice").status_code == 404
    with in_tenant(tenant) as session:
        rows = session.execute(
            text("SELECT analytics, preferences, patron_id FROM cookie_choices WHERE visitor_id = :v ORDER BY seq"),
            {"v": visitor_id},
        ).all()
        actions = session.execute(text("SELECT action FROM audit_events WHERE target_id = :v"), {"v": visitor_id})
        assert [tuple(r) for r in rows] == [(True, False, None), (False, True, None)]
        assert "privacy.cookie_choice.recorded" in set(actions.scalars())


def test_a_signed_in_patrons_cookie_choice_follows_the_patron(browser, in_tenant, tenant):
    client, patron_id = _signed_in_patron(browser, in_tenant, tenant)
    assert client.get(f"{ME}/cookie-choice").json()["chosen"] is False

    response = client.put(
        f"{ME}/cookie-choice", json={"analytics": True, "preferences": True, "notice_version": "cookies-v3"}
    )

    assert response.status_code == 200, response.text
    assert client.get(f"{ME}/cookie-choice").json()["analytics"] is True
    with in_tenant(tenant) as session:
        assert consent.cookie_choice(session, patron_id=patron_id).preferences is True


# -- objections --------------------------------------------------------------------------------


def test_an_objection_is_recorded_once_withdrawn_and_shown(browser, in_tenant, tenant):
    client, patron_id = _signed_in_patron(browser, in_tenant, tenant)
    officer = _principal(tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER])
    request_id = uuid.uuid4()
    with in_tenant(tenant) as session:
        first = objections.record_objection(
            session, patron_id, "third_party_disclosure", request_id=request_id, actor=officer
        )
        second = objections.record_objection(session, patron_id, "third_party_disclosure", actor=officer)
        objections.record_objection(session, patron_id, "purpose:research_sharing", actor=officer)
        assert first is not None and second is None  # idempotent
        assert objections.has_objected(session, patron_id, "third_party_disclosure")
        assert objections.has_objected(session, patron_id, "purpose:research_sharing")
        assert not objections.has_objected(session, patron_id, "purpose:usage_analysis")

    assert client.get(f"{ME}/preferences").json()["objections"] == [
        "purpose:research_sharing",
        "third_party_disclosure",
    ]

    with in_tenant(tenant) as session:
        objections.withdraw_objection(session, patron_id, "third_party_disclosure", actor=officer)
        assert not objections.has_objected(session, patron_id, "third_party_disclosure")
        assert [(o.scope, o.objected, o.request_id) for o in objections.objections_of(session, patron_id)] == [
            ("third_party_disclosure", True, request_id),
            ("purpose:research_sharing", True, None),
            ("third_party_disclosure", False, None),
        ]
    with in_tenant(tenant) as session:
        actions = [action for action, _ in _events(session, patron_id)]
    assert actions.count("privacy.objection.recorded") == 2 and actions.count("privacy.objection.withdrawn") == 1


@pytest.mark.parametrize("scope", ["third_party", "purpose:", "purpose:Marketing", "purpose:a b", "x" * 200])
def test_an_objection_names_a_known_scope(db, in_tenant, tenant, scope):
    with in_tenant(tenant) as session:
        patron_id = _patron(session)
        with pytest.raises(InvalidInput, match="scope"):
            objections.record_objection(session, patron_id, scope)


def test_set_preferences_refuses_one_choice_both_ways(db, in_tenant, tenant):
    with in_tenant(tenant) as session, pytest.raises(Conflict, match="both on and off"):
        consent.set_preferences(
            session,
            _principal(tenant.id, DESK),
            _patron(session),
            [Choice(Channel.EMAIL, Topic.EVENTS, True), Choice(Channel.EMAIL, Topic.EVENTS, False)],
            method=ConsentMethod.STAFF,
            notice_version="v1",
        )
    with in_tenant(tenant) as session, pytest.raises(Conflict):
        consent.set_preferences(
            session,
            _principal(tenant.id, DESK),
            _patron(session),
            [Choice(Channel.SMS, Topic.SECURITY, False)],
            method=ConsentMethod.STAFF,
            notice_version=None,
        )
