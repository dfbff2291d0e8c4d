"""Self-registration and its age gate: off unless the institution opens it; people of 13 or more register
as patrons through the usual creation path; under 13 they are refused and nothing about them is kept
(no row, no key, no log line, no audit detail); the refusal itself is recorded without personal data."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from bookwarden.api.app import create_app
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.core.permissions import Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.keyring import subject_keys
from bookwarden.db.session import tenant_session
from bookwarden.library import records as library
from bookwarden.privacy.registration import service as self_registration
from bookwarden.privacy.registration.service import birthday, old_enough, today_in
from tests.helpers import fresh_address

URL = "/api/v1/self-registration"
NAME, EMAIL = "Tilly Youngreader", "tilly.youngreader@example.org"


def admin(tenant_id) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, frozenset({Permission.POLICY_MANAGE}))


def open_registration(db, tenant_id, timezone="UTC") -> None:
    with tenant_session(db, tenant_id) as session:
        self_registration.set_settings(session, admin(tenant_id), enabled=True, timezone=timezone)


def browser(app) -> TestClient:
    return TestClient(app, client=(fresh_address(), 50000), raise_server_exceptions=False)


def thirteen_today(timezone: str) -> date:
    """The birth date of someone whose 13th birthday is today in `timezone`."""
    today = today_in(timezone)
    born = date(today.year - 13, today.month, 28 if (today.month, today.day) == (2, 29) else today.day)
    assert birthday(born, 13) <= today
    return born


def body(slug: str, born: date) -> dict:
    return {"institution": slug, "name": NAME, "email": EMAIL, "birth_date": born.isoformat()}


def test_the_13th_birthday_is_counted_by_the_calendar():
    assert old_enough(date(2013, 6, 1), date(2026, 6, 1))
    assert not old_enough(date(2013, 6, 1), date(2026, 5, 31))
    # Born on 29 February: 13 on 1 March in a common year, on 29 February in a leap year.
    assert not old_enough(date(2012, 2, 29), date(2025, 2, 28)) and old_enough(date(2012, 2, 29), date(2025, 3, 1))
    assert old_enough(date(2011, 2, 28), date(2024, 2, 28)) and not old_enough(date(2011, 3, 1), date(2024, 2, 29))
    assert not old_enough(date(9999, 12, 31), date(2026, 1, 1))  # the future, even far away
    assert old_enough(date(1, 1, 1), date(2026, 1, 1))


@pytest.mark.parametrize("timezone", ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_the_birthday_boundary_both_sides_in_the_institutions_time_zone(db, tenant, app, timezone):
    open_registration(db, tenant.id, timezone)
    born = thirteen_today(timezone)
    accepted = browser(app).post(URL, json=body(tenant.slug, born))
    assert accepted.status_code == 201, accepted.text
    refused = browser(app).post(URL, json=body(tenant.slug, born + timedelta(days=1)))
    assert refused.status_code == 403 and refused.json()["type"].endswith("age-gate")

    with tenant_session(db, tenant.id) as session:
        made = library.read(session, library.PATRONS, uuid.UUID(accepted.json()["patron_id"]))
        assert (made.name, made.email, made.birth_date) == (NAME, EMAIL, born)
        actions = session.execute(text("SELECT action FROM audit_events ORDER BY seq")).scalars().all()
        assert session.scalar(select(func.count()).select_from(library.Patron)) == 1
    assert {"patron.created", "patron.self_registered", "patron.self_registration_refused"} <= set(actions)


def test_registration_is_closed_unless_the_institution_opens_it(db, tenant, app, client_for):
    closed = browser(app).post(URL, json=body(tenant.slug, date(1990, 1, 1)))
    assert closed.status_code == 403 and closed.json()["type"].endswith("self-registration-closed")
    assert browser(app).post(URL, json=body("no-such-place", date(1990, 1, 1))).status_code == 404

    client = client_for(tenant, permissions={Permission.POLICY_MANAGE})
    assert client.get(f"{URL}/settings").json() == {"enabled": False, "timezone": "UTC"}
    changed = client.put(f"{URL}/settings", json={"enabled": True, "timezone": "Europe/London"})
    assert changed.status_code == 200 and changed.json() == {"enabled": True, "timezone": "Europe/London"}
    assert client.put(f"{URL}/settings", json={"enabled": True, "timezone": "Mars/Olympus"}).status_code == 422
    assert browser(app).post(URL, json=body(tenant.slug, date(1990, 1, 1))).status_code == 201
    assert client_for(tenant).put(f"{URL}/settings", json={"enabled": False}).status_code == 403


def test_registrations_are_throttled_per_address(db, tenant, app):
    open_registration(db, tenant.id)
    client, born = browser(app), date(1990, 1, 1)
    answers = [client.post(URL, json=body(tenant.slug, born)).status_code for _ in range(6)]
    assert answers == [201] * 5 + [429]
    throttled = client.post(URL, json=body(tenant.slug, born))
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert client.post(URL, json=body("no-such-place", born)).status_code == 429  # no probing slugs meanwhile
    assert browser(app).post(URL, json=body(tenant.slug, born)).status_code == 201  # another address


def test_a_refused_child_leaves_nothing_but_the_refusal(committed_db, committed_tenant, home, capsys, superuser_conn):
    from bookwarden.core.config import Settings

    tenant_id = committed_tenant()
    open_registration(committed_db, tenant_id)
    app = create_app(committed_db, Settings(home=home))
    with tenant_session(committed_db, tenant_id) as session:
        slug = session.execute(text("SELECT slug FROM tenants WHERE id = :t"), {"t": tenant_id}).scalar_one()
    born = thirteen_today("UTC") + timedelta(days=1)
    heads = _heads(committed_db, tenant_id)
    keys_before = _subject_keys(committed_db, tenant_id)
    capsys.readouterr()

    with structlog.testing.capture_logs() as logs:
        refused = browser(app).post(URL, json=body(slug, born))
    assert refused.status_code == 403 and refused.json()["type"].endswith("age-gate")

    said = [refused.text, repr(logs), *capsys.readouterr()]
    events = _events_since(committed_db, tenant_id, heads)
    rows = _every_row(superuser_conn)
    for value in (NAME, EMAIL, born.isoformat(), "Tilly", "youngreader"):
        assert all(value not in text_ for text_ in said), value
        assert value not in repr(events), value
        assert value not in rows, value
    with tenant_session(committed_db, tenant_id) as session:
        assert session.scalar(select(func.count()).select_from(library.Patron)) == 0
    assert _subject_keys(committed_db, tenant_id) == keys_before  # no key was made for the person

    refusal = [e for e in events if e["action"] == "patron.self_registration_refused"]
    assert [(e["chain"], e["outcome"], e["details"]) for e in refusal] == [
        (tenant_id, "denied", {"problem": "age-gate", "minimum_age": 13})
    ]
    answered = [e for e in events if e["action"] == "request.failed"]  # the API's record of its 403
    assert [(e["chain"], e["details"]["problem"]) for e in answered] == [(PLATFORM_CHAIN, "age-gate")]


def _heads(db, tenant_id) -> dict:
    heads = {}
    for chain in (tenant_id, PLATFORM_CHAIN):
        with tenant_session(db, chain) as session:
            heads[chain] = session.execute(text("SELECT coalesce(max(seq), 0) FROM audit_events")).scalar_one()
    return heads


def _events_since(db, tenant_id, heads) -> list[dict]:
    found = []
    for chain in (tenant_id, PLATFORM_CHAIN):
        with tenant_session(db, chain) as session:
            rows = session.execute(
                text("SELECT action, outcome, details, target_id FROM audit_events WHERE seq > :s"),
                {"s": heads[chain]},
            ).mappings()
            found += [{"chain": chain, **row} for row in rows]
    return found


def _subject_keys(db, tenant_id) -> int:
    with db.keyring.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(subject_keys).where(subject_keys.c.tenant_id == tenant_id))


def _every_row(conn) -> str:
    """Every row of every table, as text, read by a superuser (no row-level security in the way)."""
    tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return "\n".join(row[0] for table in tables for row in conn.execute(f"SELECT t::text FROM {table} t"))  # noqa: S608
