"""Signing in: sessions in PostgreSQL, brute-force defence, no user enumeration, and the second factor.

Against the real PostgreSQL and real argon2id, at OWASP's floor parameters (see `fast_hashing`)
so that dozens of sign-ins stay quick; production keeps its defaults. Time moves by rewriting
timestamps in SQL: inside a test's transaction the database clock stands still.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.access.power import power_class
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords, sessions, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.mfa import service as mfa
from bookwarden.identity.models import Account, AccountKind, AccountStatus
from bookwarden.identity.signin import service as signin
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy import service as tenancy
from tests.helpers import argon2_verifications, grant, stored_hash

PROBLEM = "application/problem+json"
PASSWORD = "violet tractor mango 42 harbour"
WRONG = "violet tractor mango 42 harbor"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Hash and verify at OWASP's floor in these tests only; sign-in reads DEFAULT at call time."""
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _admin(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])


@pytest.fixture
def make_account(in_tenant):
    """make_account(tenant, username, roles=..., totp=..., recovery=...) -> Account, signed in with PASSWORD."""

    def make(
        tenant, username, *, roles=(), totp: str | None = None, recovery: list[str] | None = None, email: str = ""
    ):
        with in_tenant(tenant) as session:
            account = accounts.create_account(
                session,
                _admin(tenant),
                kind=AccountKind.STAFF,
                username=username,
                email=email or f"{username}@alpha.example",
            )
            # The hash is made directly rather than through the password policy: the policy has its
            # own tests, and hashing at the patched DEFAULT keeps the timing comparison fair.
            account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
            account.status = AccountStatus.ACTIVE
            if totp is not None:
                key = session.keyring.subject_key(tenant.id, account.id)
                account.totp_secret = encrypt_field(key, tenant.id, "accounts", "totp_secret", account.id, totp)
            if recovery is not None:
                account.recovery_code_hashes = recovery
            session.flush()
            for role in roles:
                grant(session, tenant.id, account.id, role)
            return account

    return make


def _login(client, username, password=PASSWORD, institution="alpha"):
    return client.post(
        "/api/v1/auth/login", json={"institution": institution, "username": username, "password": password}
    )


def _signed_in(browser, username, **kw) -> TestClient:
    client = browser(**kw)
    response = _login(client, username)
    assert response.status_code == 200, response.text
    return client


def _cookie(client) -> str:
    return client.cookies[sessions.COOKIE_NAME]


def _with_cookie(browser, value: str) -> TestClient:
    client = browser()
    client.headers["Cookie"] = f"{sessions.COOKIE_NAME}={value}"
    return client


def _sql(in_tenant, tenant, statement: str, **params):
    with in_tenant(tenant) as session:
        return session.execute(text(statement), params)


def _account_failures(in_tenant, tenant, account) -> int:
    with in_tenant(tenant) as session:
        return throttle.account_failures(session, account.id)


def _service_mail(in_tenant, tenant) -> list:
    with in_tenant(tenant) as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.category == MailCategory.SERVICE)).all()
        return [open_mail(session, row) for row in rows]


# -- sessions ------------------------------------------------------------------------------


def test_login_sets_a_secure_httponly_lax_cookie_with_a_new_session_each_time(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    client = browser()
    first = _login(client, "ann")
    assert first.status_code == 200
    assert first.json() == {"account_id": str(account.id), "mfa_required": False}
    set_cookie = first.headers["set-cookie"]
    assert set_cookie.startswith(f"{sessions.COOKIE_NAME}=")
    for attribute in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
        assert attribute.lower() in set_cookie.lower(), attribute
    first_value = _cookie(client)

    assert _login(client, "ann").status_code == 200
    second_value = _cookie(client)
    assert second_value != first_value
    assert len(second_value) >= 43  # 256 bits, base64url

    # Only hashes are stored, and signing in again ended the session the browser held before.
    with in_tenant(tenant) as session:
        stored = session.execute(text("SELECT token_hash, revoked_at FROM sessions ORDER BY created_at")).all()
    assert {row.token_hash for row in stored} == {sessions.token_hash(first_value), sessions.token_hash(second_value)}
    assert all(first_value.encode() not in row.token_hash for row in stored)
    assert _with_cookie(browser, first_value).get("/api/v1/auth/me").status_code == 401
    assert _with_cookie(browser, second_value).get("/api/v1/auth/me").status_code == 200


def test_the_cookie_authenticates_api_calls_with_the_accounts_permissions(browser, make_account, tenant):
    account = make_account(tenant, "cy", roles=[BuiltinRole.CIRCULATION_STAFF])
    make_account(tenant, "dee")  # no role: no permission
    client = _signed_in(browser, "cy")

    me = client.get("/api/v1/auth/me").json()
    assert me["kind"] == "account" and me["id"] == str(account.id) and me["tenant_id"] == str(tenant.id)
    assert set(me["permissions"]) == {p.value for p in BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF]}
    assert client.post("/api/v1/patrons", json={"name": "Pat Reader"}).status_code == 201
    assert [p["name"] for p in client.get("/api/v1/patrons").json()["items"]] == ["Pat Reader"]
    assert (
        client.post("/api/v1/posts", json={"patron_id": str(uuid.uuid4()), "board": "b", "body": "x"}).status_code
        == 403
    )

    nobody = _signed_in(browser, "dee")
    refused = nobody.get("/api/v1/patrons")
    assert refused.status_code == 403 and "patrons.read" in refused.json()["detail"]


def test_a_session_ends_after_the_idle_timeout(browser, make_account, in_tenant, tenant):
    make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    _sql(in_tenant, tenant, "UPDATE sessions SET idle_expires_at = now() - interval '1 second'")
    response = client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["type"] == "urn:bookwarden:problem:unauthenticated"


def test_activity_slides_the_idle_expiry_but_never_past_the_absolute_one(browser, make_account, in_tenant, tenant):
    make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    _sql(
        in_tenant,
        tenant,
        "UPDATE sessions SET last_seen_at = now() - interval '20 minutes', "
        "idle_expires_at = now() + interval '10 minutes'",
    )
    assert client.get("/api/v1/auth/me").status_code == 200
    slid = _sql(in_tenant, tenant, "SELECT idle_expires_at - now() AS left FROM sessions").scalar_one()
    assert slid == sessions.IDLE_TIMEOUT

    _sql(
        in_tenant,
        tenant,
        "UPDATE sessions SET last_seen_at = now() - interval '20 minutes', "
        "idle_expires_at = now() + interval '5 minutes', absolute_expires_at = now() + interval '7 minutes'",
    )
    assert client.get("/api/v1/auth/me").status_code == 200
    left = _sql(in_tenant, tenant, "SELECT idle_expires_at - now() AS left FROM sessions").scalar_one()
    assert left == timedelta(minutes=7)


def test_a_session_ends_after_the_absolute_timeout_however_active(browser, make_account, in_tenant, tenant):
    make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    expiry = _sql(in_tenant, tenant, "SELECT absolute_expires_at - created_at FROM sessions").scalar_one()
    assert expiry == sessions.ABSOLUTE_TIMEOUT == timedelta(hours=12)
    # Busy all day: signed in 11 h 59 min ago and active a minute ago.
    _sql(
        in_tenant,
        tenant,
        "UPDATE sessions SET created_at = now() - interval '11 hours 59 minutes', "
        "last_seen_at = now() - interval '2 minutes', idle_expires_at = now() + interval '28 seconds', "
        "absolute_expires_at = now() + interval '1 minute'",
    )
    assert client.get("/api/v1/auth/me").status_code == 200
    left = _sql(in_tenant, tenant, "SELECT idle_expires_at - now() FROM sessions").scalar_one()
    assert left == timedelta(minutes=1)  # activity cannot carry it past the 12 hours
    _sql(
        in_tenant,
        tenant,
        "UPDATE sessions SET created_at = created_at - interval '1 minute', "
        "idle_expires_at = now() - interval '1 second', absolute_expires_at = now() - interval '1 second'",
    )
    assert client.get("/api/v1/auth/me").status_code == 401


def test_logout_ends_the_session_and_clears_the_cookie(browser, make_account, tenant):
    make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    value = _cookie(client)
    response = client.post("/api/v1/auth/logout")
    assert response.status_code == 204
    assert sessions.COOKIE_NAME not in client.cookies
    assert _with_cookie(browser, value).get("/api/v1/auth/me").status_code == 401
    assert browser().post("/api/v1/auth/logout").status_code == 204  # nothing to end: still fine


def test_logout_everywhere_ends_every_session_of_the_account_and_no_other(browser, make_account, tenant, client_for):
    make_account(tenant, "ann")
    make_account(tenant, "bob")
    laptop, phone, bobs = _signed_in(browser, "ann"), _signed_in(browser, "ann"), _signed_in(browser, "bob")
    machine = client_for(tenant)

    response = laptop.post("/api/v1/auth/logout-everywhere")
    assert response.status_code == 200 and response.json() == {"revoked_sessions": 2}
    assert laptop.get("/api/v1/auth/me").status_code == 401
    assert phone.get("/api/v1/auth/me").status_code == 401
    assert bobs.get("/api/v1/auth/me").status_code == 200
    assert machine.get("/api/v1/patrons").status_code == 200  # API tokens keep working
    assert machine.post("/api/v1/auth/logout-everywhere").status_code == 403


def test_a_disabled_accounts_sessions_stop_working(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    with in_tenant(tenant) as session:
        accounts.disable_account(session, _admin(tenant), account.id)
    assert client.get("/api/v1/auth/me").status_code == 401


def test_forged_unknown_and_other_tenants_cookies_reach_nothing_here(browser, make_account, tenant, other_tenant):
    for forged in ("x", "A" * 43, sessions.COOKIE_NAME):
        response = _with_cookie(browser, forged).get("/api/v1/patrons")
        assert response.status_code == 401 and response.headers["content-type"] == PROBLEM

    make_account(tenant, "ann", roles=[BuiltinRole.CIRCULATION_STAFF])
    make_account(other_tenant, "zed", roles=[BuiltinRole.CIRCULATION_STAFF])
    alpha = _signed_in(browser, "ann")
    assert alpha.post("/api/v1/patrons", json={"name": "Alpha Patron"}).status_code == 201
    beta = browser()
    assert _login(beta, "zed", institution="beta").status_code == 200
    assert beta.get("/api/v1/auth/me").json()["tenant_id"] == str(other_tenant.id)
    assert beta.get("/api/v1/patrons").json()["items"] == []
    assert beta.get("/api/v1/patrons", params={"tenant_id": str(tenant.id)}).json()["items"] == []
    assert _login(browser(), "zed", institution="alpha").status_code == 401  # accounts belong to their tenant


def test_state_changing_cookie_requests_must_come_from_this_site(browser, make_account, tenant):
    make_account(tenant, "ann", roles=[BuiltinRole.CIRCULATION_STAFF])
    client = _signed_in(browser, "ann")
    del client.headers["X-Requested-With"]

    assert client.get("/api/v1/patrons").status_code == 200  # reading changes nothing
    refused = client.post("/api/v1/patrons", json={"name": "Forged"})
    assert refused.status_code == 403 and "X-Requested-With" in refused.json()["detail"]
    for origin in ("https://evil.example", "null", "https://testserver.evil.example"):
        assert client.post("/api/v1/patrons", json={"name": "Forged"}, headers={"Origin": origin}).status_code == 403
    assert client.post("/api/v1/auth/logout-everywhere").status_code == 403
    assert client.get("/api/v1/patrons").json()["items"] == []

    for same_site in (
        {"Origin": "https://testserver"},
        {"Referer": "https://testserver/console"},
        {"X-Requested-With": "x"},
    ):
        assert client.post("/api/v1/patrons", json={"name": "Same"}, headers=same_site).status_code == 201


def test_login_accepts_json_only_so_a_cross_site_form_cannot_sign_anyone_in(browser, make_account, tenant):
    make_account(tenant, "ann")
    form = browser().post(
        "/api/v1/auth/login",
        content=json.dumps({"institution": "alpha", "username": "ann", "password": PASSWORD}),
        headers={"Content-Type": "text/plain"},
    )
    assert form.status_code == 422
    assert sessions.COOKIE_NAME not in form.headers.get("set-cookie", "")


def test_api_tokens_keep_working_and_win_over_a_cookie(browser, make_account, tenant, issue_token):
    make_account(tenant, "dee")  # no role at all
    client = _signed_in(browser, "dee")
    assert client.get("/api/v1/patrons").status_code == 403
    client.headers["Authorization"] = f"Bearer {issue_token(tenant, permissions=LIBRARY_READ)}"
    assert client.get("/api/v1/patrons").status_code == 200
    assert client.get("/api/v1/auth/me").json()["kind"] == "api_token"


# -- no user enumeration -------------------------------------------------------------------


def _comparable(response) -> tuple:
    body = response.json()
    body.pop("instance", None)  # the request id differs on every request, by design
    return response.status_code, response.headers["content-type"], tuple(sorted(body.items()))


def test_unknown_account_wrong_password_and_unknown_institution_get_the_same_answer(
    browser, make_account, in_tenant, tenant
):
    account = make_account(tenant, "ann")
    gone = make_account(tenant, "gone")
    with in_tenant(tenant) as session:
        accounts.disable_account(session, _admin(tenant), gone.id)
    answers = [
        _login(browser(), "ann", WRONG),
        _login(browser(), "nobody-here"),
        _login(browser(), "ann", institution="no-such-place"),
        _login(browser(), "gone"),  # disabled, with the right password
    ]
    assert len({_comparable(a) for a in answers}) == 1
    status, _, body = _comparable(answers[0])
    assert status == 401 and dict(body)["type"] == "urn:bookwarden:problem:invalid-credentials"
    assert all("set-cookie" not in a.headers for a in answers)
    assert _account_failures(in_tenant, tenant, account) == 1  # the unknown names counted nowhere on it


@pytest.mark.parametrize("institution", ["alpha\x00", "ALPHA ", "a", "-alpha", "alpha/../beta"])
def test_odd_institution_names_get_the_usual_answer_or_work_when_only_case_differs(
    browser, make_account, tenant, institution
):
    make_account(tenant, "ann")
    response = _login(browser(), "ann", institution=institution)
    assert response.status_code == (200 if institution.strip().lower() == "alpha" else 401), response.text


def test_unknown_accounts_cost_as_much_as_wrong_passwords(browser, make_account, tenant, monkeypatch):
    """The same argon2 work either way (counted, not timed: a busy machine makes timings lie). Without
    dummy_verify an unknown name answers in a few milliseconds against ~40 ms for a wrong password."""
    make_account(tenant, "ann")
    work = argon2_verifications(monkeypatch)
    assert _login(browser(), "ann", WRONG).status_code == 401
    wrong, work[:] = list(work), []
    assert _login(browser(), "nobody-here", WRONG).status_code == 401
    assert len(wrong) == 1 and work == wrong, (wrong, work)


# -- per-address throttle ------------------------------------------------------------------


def _expire_address_delay(db):
    with platform_session(db) as session:
        session.execute(
            text("UPDATE auth_failures SET locked_until = now() - interval '1 second' WHERE scope = 'address'")
        )


def test_five_failures_from_one_address_bring_growing_delays_with_retry_after(
    db, browser, make_account, in_tenant, tenant
):
    make_account(tenant, "ann")
    guesser = browser("203.0.113.9")
    # Spraying: one guess at each of five names, known or not.
    for name in ("ann", "bob", "cy", "dee", "eve"):
        assert _login(guesser, name, WRONG).status_code == 401

    refused = _login(guesser, "ann")  # even the right password is not considered while waiting
    assert refused.status_code == 429 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"] == "urn:bookwarden:problem:too-many-attempts"
    assert int(refused.headers["Retry-After"]) == throttle.ADDRESS_FIRST_DELAY.total_seconds() == 30
    assert _login(guesser, "ann").status_code == 429  # asking again while waiting changes nothing
    assert int(_login(guesser, "ann").headers["Retry-After"]) == 30

    # The victim, elsewhere, is untouched: per-address throttles carry the weight.
    assert _login(browser("198.51.100.20"), "ann").status_code == 200

    _expire_address_delay(db)
    assert _login(guesser, "ann", WRONG).status_code == 401
    assert int(_login(guesser, "ann").headers["Retry-After"]) == 60
    _expire_address_delay(db)
    assert _login(guesser, "ann", WRONG).status_code == 401
    assert int(_login(guesser, "ann").headers["Retry-After"]) == 120


def test_address_counts_start_afresh_after_a_quiet_window_and_successes_do_not_wipe_them(
    db, browser, make_account, tenant
):
    make_account(tenant, "ann")
    guesser = browser("203.0.113.10")
    for _ in range(4):
        assert _login(guesser, "nobody", WRONG).status_code == 401
    assert _login(guesser, "ann").status_code == 200  # a success takes back only its own count
    assert _login(guesser, "nobody", WRONG).status_code == 401
    assert _login(guesser, "nobody").status_code == 429

    with platform_session(db) as session:
        session.execute(
            text(
                "UPDATE auth_failures SET window_start = now() - interval '16 minutes', "
                "locked_until = now() - interval '16 minutes' WHERE scope = 'address'"
            )
        )
    for _ in range(4):
        assert _login(guesser, "nobody", WRONG).status_code == 401
    assert _login(guesser, "ann").status_code == 200


def test_ipv6_addresses_count_per_64_network():
    assert throttle.address_bucket("2001:db8:1:2:aaaa::1") == throttle.address_bucket("2001:db8:1:2:ffff::9")
    assert throttle.address_bucket("2001:db8:1:2::1") != throttle.address_bucket("2001:db8:1:3::1")
    assert throttle.address_bucket("::ffff:192.0.2.7") == "192.0.2.7"
    assert throttle.address_bucket(" 192.0.2.7 ") == "192.0.2.7"


def test_quiet_address_counts_are_forgotten_and_account_counts_kept(db, browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    assert _login(browser(), "ann", WRONG).status_code == 401
    with platform_session(db) as session:
        session.execute(text("UPDATE auth_failures SET last_failure_at = now() - interval '2 days'"))
        assert throttle.forget_quiet_addresses(session) == 1
        assert session.execute(text("SELECT scope FROM auth_failures")).scalars().all() == ["account"]
    assert _account_failures(in_tenant, tenant, account) == 1


def test_the_counts_name_nobody(db, browser, make_account, tenant):
    make_account(tenant, "ann")
    assert _login(browser("192.0.2.55"), "ann", WRONG).status_code == 401
    with platform_session(db) as session:
        keys = session.execute(text("SELECT key FROM auth_failures")).scalars().all()
    assert len(keys) == 2
    assert all(b"ann" not in key and b"192.0.2.55" not in key and len(key) == 32 for key in keys)


# -- per-account lockout -------------------------------------------------------------------


def _fail_from_many_addresses(browser, username: str, times: int) -> None:
    for _ in range(times):
        assert _login(browser(), username, WRONG).status_code == 401


def _expire_account_lock(in_tenant, tenant):
    _sql(
        in_tenant, tenant, "UPDATE auth_failures SET locked_until = now() - interval '1 second' WHERE scope = 'account'"
    )


def _account_record(in_tenant, tenant) -> tuple:
    with in_tenant(tenant) as session:
        return tuple(
            session.execute(text("SELECT consecutive, locked_until FROM auth_failures WHERE scope = 'account'")).one()
        )


def test_ten_failures_lock_the_account_briefly_and_mail_its_holder(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    _fail_from_many_addresses(browser, "ann", throttle.ACCOUNT_LOCK_AFTER - 1)
    assert _service_mail(in_tenant, tenant) == []
    _fail_from_many_addresses(browser, "ann", 1)

    locked = _login(browser(), "ann")  # the right password, while locked: the usual answer
    assert _comparable(locked) == _comparable(_login(browser(), "nobody", WRONG))
    mail = _service_mail(in_tenant, tenant)
    assert len(mail) == 1
    assert mail[0].to == "ann@alpha.example"
    assert "paused" in mail[0].subject and "10 times in a row" in mail[0].body
    assert _account_failures(in_tenant, tenant, account) == 10
    with in_tenant(tenant) as session:
        lock = session.execute(text("SELECT locked_until - now() FROM auth_failures WHERE scope = 'account'")).scalar()
    assert lock == throttle.ACCOUNT_FIRST_LOCK == timedelta(minutes=1)

    _expire_account_lock(in_tenant, tenant)  # the lock ends by itself
    assert _login(browser(), "ann").status_code == 200
    assert _account_failures(in_tenant, tenant, account) == 0
    assert len(_service_mail(in_tenant, tenant)) == 1


def test_a_lock_on_an_account_whose_email_cannot_be_mailed_still_answers_as_usual(
    browser, make_account, in_tenant, tenant
):
    make_account(tenant, "ann", email="ann at the front desk")
    _fail_from_many_addresses(browser, "ann", throttle.ACCOUNT_LOCK_AFTER)
    assert _login(browser(), "ann").status_code == 401
    assert _service_mail(in_tenant, tenant) == []


def test_each_failure_after_a_lock_doubles_it_up_to_an_hour_and_mails_once(browser, make_account, in_tenant, tenant):
    make_account(tenant, "ann")
    _fail_from_many_addresses(browser, "ann", throttle.ACCOUNT_LOCK_AFTER)
    periods = []
    for _ in range(8):
        _expire_account_lock(in_tenant, tenant)
        _fail_from_many_addresses(browser, "ann", 1)
        with in_tenant(tenant) as session:
            periods.append(
                session.execute(text("SELECT locked_until - now() FROM auth_failures WHERE scope = 'account'")).scalar()
            )
    assert periods == [timedelta(minutes=m) for m in (2, 4, 8, 16, 32, 60, 60, 60)]
    assert len(_service_mail(in_tenant, tenant)) == 1  # re-locks in one streak tell the holder nothing new


def test_attackers_on_many_addresses_cannot_keep_the_victim_locked_out(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    _fail_from_many_addresses(browser, "ann", throttle.ACCOUNT_LOCK_AFTER)
    before = _account_record(in_tenant, tenant)

    # Guesses during the lock are refused before the password check: not counted, not extending it.
    _fail_from_many_addresses(browser, "ann", 30)
    assert _account_record(in_tenant, tenant) == before

    _expire_account_lock(in_tenant, tenant)
    victim = browser()
    assert _login(victim, "ann").status_code == 200
    assert victim.get("/api/v1/auth/me").json()["id"] == str(account.id)


def test_no_more_than_100_consecutive_failures_ever_reach_the_password_check(
    browser, make_account, in_tenant, tenant, monkeypatch
):
    account = make_account(tenant, "ann")
    with in_tenant(tenant) as session:  # 99 failures so far, the last lock long over
        session.execute(
            text(
                "INSERT INTO auth_failures (scope, key, consecutive, locked_until) "
                "VALUES ('account', :key, 99, now() - interval '1 second')"
            ),
            {"key": throttle.account_key(session, account.id)},
        )
    checks = []
    real_verify = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda *a, **kw: checks.append(1) or real_verify(*a, **kw))

    _fail_from_many_addresses(browser, "ann", 1)  # the 100th
    assert len(checks) == 1
    mail = _service_mail(in_tenant, tenant)
    assert len(mail) == 1 and "blocked" in mail[0].subject and "administrator" in mail[0].body

    for _ in range(3):
        _expire_account_lock(in_tenant, tenant)  # no lock to wait out can undo the cap
        assert _login(browser(), "ann").status_code == 401
    assert len(checks) == 1
    assert _account_failures(in_tenant, tenant, account) == 100

    with in_tenant(tenant) as session:  # what an administrator's password reset does
        throttle.clear_account(session, account.id)
    assert _login(browser(), "ann").status_code == 200


@pytest.fixture
def committed_account(committed_db, home):
    """An institution "gamma" and its account "ann", committed, for tests running on many connections."""
    with platform_session(committed_db) as session:
        tenant = tenancy.create_tenant(session, committed_db.keyring, home, "gamma", "Gamma College")
    with tenant_session(committed_db, tenant.id) as session:
        account = accounts.create_account(
            session, _admin(tenant), kind=AccountKind.STAFF, username="ann", email="ann@gamma.example"
        )
        account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
        account.status = AccountStatus.ACTIVE
    return tenant, account


def test_concurrent_guesses_cannot_slip_past_the_lock(committed_db, committed_account, monkeypatch):
    # Eight threads with their own connections stand for eight instances behind a load balancer.
    checks = []
    real_verify = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda *a, **kw: checks.append(1) or real_verify(*a, **kw))

    def guess(n: int) -> str:
        attempt = signin.SignInAttempt("gamma", "ann", WRONG, f"10.99.{n}.1", "test")
        with pytest.raises(signin.InvalidCredentials):
            signin.sign_in(committed_db, attempt)
        return "refused"

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(guess, range(40))) == {"refused"}
    assert len(checks) == throttle.ACCOUNT_LOCK_AFTER


def test_concurrent_admissions_never_pass_the_hard_cap(committed_db, committed_account):
    tenant, account = committed_account
    with tenant_session(committed_db, tenant.id) as session:
        session.execute(
            text("INSERT INTO auth_failures (scope, key, consecutive) VALUES ('account', :key, 95)"),
            {"key": throttle.account_key(session, account.id)},
        )

    def admit(_: int) -> bool:
        with tenant_session(committed_db, tenant.id) as session:
            return throttle.admit_account(session, account.id, honour_lock=False) is not None

    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = list(pool.map(admit, range(30)))
    assert sum(admitted) == throttle.ACCOUNT_HARD_CAP - 95
    with tenant_session(committed_db, tenant.id) as session:
        assert throttle.account_failures(session, account.id) == throttle.ACCOUNT_HARD_CAP


def test_a_weaker_hash_is_upgraded_at_sign_in(browser, make_account, in_tenant, tenant, monkeypatch):
    account = make_account(tenant, "ann")  # hashed at the floor
    stronger = passwords.HashParams(memory_cost=passwords.OWASP_FLOOR.memory_cost * 2, time_cost=2, parallelism=1)
    monkeypatch.setattr(passwords, "DEFAULT", stronger)
    assert _login(browser(), "ann").status_code == 200
    with in_tenant(tenant) as session:
        stored = session.get(Account, (tenant.id, account.id), populate_existing=True).password_hash
    assert f"m={stronger.memory_cost}," in stored
    assert passwords.verify_password(stored, PASSWORD, stronger).ok


# -- the second factor ---------------------------------------------------------------------


def test_an_admin_without_a_second_factor_is_refused_and_told_to_enrol(browser, make_account, tenant):
    make_account(tenant, "ada", roles=[BuiltinRole.TENANT_ADMIN])
    client = browser()
    response = _login(client, "ada")
    assert response.status_code == 403
    body = response.json()
    assert body["type"] == "urn:bookwarden:problem:second-factor-enrolment-required"
    assert "tenant_admin" in body["detail"] and "administrator" in body["detail"]
    assert sessions.COOKIE_NAME not in client.cookies
    assert _login(client, "ada", WRONG).status_code == 401  # a wrong password learns nothing of this


@pytest.fixture
def totp_admin(make_account, tenant):
    secret = mfa.new_totp_secret()
    codes, hashes = mfa.new_recovery_codes(3)
    account = make_account(tenant, "ada", roles=[BuiltinRole.TENANT_ADMIN], totp=secret, recovery=hashes)
    return account, pyotp.TOTP(secret), codes


def _step(client, code: str):
    return client.post("/api/v1/auth/mfa", json={"code": code})


def test_a_totp_admin_gets_a_pending_session_that_reads_nothing_until_the_code(
    browser, totp_admin, client_for, in_tenant, tenant
):
    account, totp, _ = totp_admin
    client_for(tenant).post("/api/v1/patrons", json={"name": "Private Person"})
    client = browser()
    response = _login(client, "ada")
    assert response.status_code == 200 and response.json() == {"account_id": str(account.id), "mfa_required": True}
    pending = _cookie(client)
    left = _sql(in_tenant, tenant, "SELECT idle_expires_at - now() FROM sessions").scalar_one()
    assert left == sessions.SECOND_FACTOR_TIMEOUT

    for path in ("/api/v1/patrons", "/api/v1/auth/me"):
        refused = client.get(path)
        assert refused.status_code == 401 and "/api/v1/auth/mfa" in refused.json()["detail"]
    assert client.post("/api/v1/auth/logout-everywhere").status_code == 401

    wrong = _step(client, "000000" if totp.now() != "000000" else "111111")
    assert wrong.status_code == 401 and wrong.json()["type"] == "urn:bookwarden:problem:invalid-second-factor"
    done = _step(client, totp.now())
    assert done.status_code == 200 and done.json() == {"account_id": str(account.id), "mfa_required": False}
    assert _cookie(client) != pending  # privileges rose: a new session value
    assert _with_cookie(browser, pending).get("/api/v1/patrons").status_code == 401
    assert [p["name"] for p in client.get("/api/v1/patrons").json()["items"]] == ["Private Person"]
    assert _account_failures(in_tenant, tenant, account) == 0


def test_a_used_totp_code_is_refused_and_a_fresh_one_accepted(browser, totp_admin):
    _, totp, _ = totp_admin
    first = browser()
    _login(first, "ada")
    code = totp.now()
    assert _step(first, code).status_code == 200

    second = browser()
    _login(second, "ada")
    assert _step(second, code).status_code == 401  # replayed within its 30 seconds
    upcoming = totp.at(datetime.now(UTC) + timedelta(seconds=30))
    assert _step(second, upcoming).status_code == 200


def test_a_recovery_code_works_once(browser, totp_admin):
    _, _, codes = totp_admin
    first = browser()
    _login(first, "ada")
    assert _step(first, codes[0].upper()).status_code == 200
    assert first.get("/api/v1/auth/me").status_code == 200

    second = browser()
    _login(second, "ada")
    assert _step(second, codes[0]).status_code == 401
    assert _step(second, codes[1]).status_code == 200


def test_five_wrong_codes_end_the_pending_session_and_count_against_the_account(browser, totp_admin, in_tenant, tenant):
    account, totp, _ = totp_admin
    client = browser()
    _login(client, "ada")
    wrong = "000000" if totp.now() != "000000" else "111111"
    for _ in range(signin.SECOND_FACTOR_TRIES):
        assert _step(client, wrong).status_code == 401
    assert _step(client, totp.now()).status_code == 401  # the session is gone: sign in again
    # The sign-in itself and each wrong code: a stolen password does not buy unlimited code guesses.
    assert _account_failures(in_tenant, tenant, account) == 1 + signin.SECOND_FACTOR_TRIES


def test_a_second_factor_without_a_pending_sign_in_is_refused(browser, make_account, tenant):
    assert _step(browser(), "123456").status_code == 401
    make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    assert _step(client, "123456").status_code == 401  # a full session has no second step to take


def test_a_role_that_needs_a_second_factor_applies_to_sessions_already_open(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    with in_tenant(tenant) as session:
        grant(session, tenant.id, account.id, BuiltinRole.SECURITY_OFFICER)
    # Granting the role ends the sessions opened before it (privileges_changed); none survives to
    # act with the new role's rights on a password alone.
    refused = client.get("/api/v1/auth/me")
    assert refused.status_code == 401


def test_privileges_changed_ends_the_accounts_sessions(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    laptop, phone = _signed_in(browser, "ann"), _signed_in(browser, "ann")
    with in_tenant(tenant) as session:
        assert sessions.privileges_changed(session, account.id) == 2
    assert laptop.get("/api/v1/auth/me").status_code == 401
    assert phone.get("/api/v1/auth/me").status_code == 401
    assert _signed_in(browser, "ann").get("/api/v1/auth/me").status_code == 200


def test_the_documented_defaults():
    minute, hour = 60, 3600
    assert throttle.ADDRESS_FREE_FAILURES == 5
    assert throttle.ADDRESS_WINDOW.total_seconds() == 15 * minute
    assert throttle.ACCOUNT_HARD_CAP == 100
    assert throttle.ACCOUNT_LOCK_AFTER == 10
    assert throttle.ACCOUNT_FIRST_LOCK.total_seconds() == minute
    assert throttle.ACCOUNT_MAX_LOCK.total_seconds() == hour
    assert sessions.IDLE_TIMEOUT.total_seconds() == 30 * minute
    assert sessions.ABSOLUTE_TIMEOUT.total_seconds() == 12 * hour
    # A second factor follows the permissions held (access/power.py), not role names: of the built-in
    # tenant roles, those carrying administrative permissions (the audit trail's readers included).
    assert {r for r in BuiltinRole if not r.is_platform and power_class(BUILTIN_PERMISSIONS[r]).privileged} == {
        BuiltinRole.TENANT_ADMIN,
        BuiltinRole.SECURITY_OFFICER,
        BuiltinRole.PRIVACY_OFFICER,
        BuiltinRole.AUDITOR,
    }
