"""Operator accounts: enrolment with the one-time link, sign-in with a password and always a second factor,
platform sessions, the brute-force defence, and a principal that acts exactly as an operator token does.

Against the real PostgreSQL, over HTTP; argon2 at OWASP's floor, as in the other sign-in tests.
"""

from __future__ import annotations

import json

import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from bookwarden.access.grants import service as grants
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.core.errors import Conflict, InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords, throttle
from bookwarden.identity.operators import service as operator_accounts
from tests.helpers import populate

AUTH = "/api/v1/operator/auth"
PASSWORD = "granite orchard lantern 93 violet"
PROBLEM = "urn:bookwarden:problem:"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _token(url: str) -> str:
    return url.split("#token=", 1)[1]


@pytest.fixture
def create(db):
    """create(username, role) -> the enrolment link's token of a new operator account."""

    def make(username: str, role: str = "operator_ops") -> str:
        with platform_session(db) as session:
            return _token(operator_accounts.create_operator(session, db.keyring, db.master, username, role).url)

    return make


@pytest.fixture
def enrolled(create, browser, db):
    """enrolled(username, role) -> (TOTP, recovery codes) of an operator who completed enrolment."""

    def make(username: str, role: str = "operator_ops"):
        token = create(username, role)
        client = browser()
        started = client.post(f"{AUTH}/enrolment", json={"token": token})
        assert started.status_code == 201, started.text
        totp = pyotp.TOTP(started.json()["secret"])
        done = client.post(
            f"{AUTH}/enrolment/complete", json={"token": token, "password": PASSWORD, "code": totp.now()}
        )
        assert done.status_code == 200, done.text
        # The confirming code is spent; let the next sign-in use the current one (the clock stands still here).
        with platform_session(db) as session:
            session.execute(text("UPDATE operator_accounts SET totp_last_step = totp_last_step - 2"))
        return totp, done.json()["recovery_codes"]

    return make


def _login(client, username: str, password: str = PASSWORD):
    return client.post(f"{AUTH}/login", json={"username": username, "password": password})


@pytest.fixture
def signed_in(enrolled, browser):
    """signed_in(username, role) -> a browser with a complete operator session."""

    def make(username: str, role: str = "operator_ops"):
        totp, _ = enrolled(username, role)
        client = browser()
        assert _login(client, username).json()["mfa_required"] is True
        assert client.post(f"{AUTH}/mfa", json={"code": totp.now()}).status_code == 200
        return client

    return make


def _platform_events(db, after: int = 0) -> list:
    with tenant_session(db, PLATFORM_CHAIN) as session:
        return session.execute(
            text(
                "SELECT seq, action, outcome, actor_kind, actor_id, target_kind, target_id, details FROM audit_events "
                "WHERE seq > :after ORDER BY seq"
            ),
            {"after": after},
        ).all()


def _head(db) -> int:
    events = _platform_events(db)
    return events[-1].seq if events else 0


# -- enrolment ---------------------------------------------------------------------------------


def test_the_link_sets_a_policy_password_and_an_app_once(create, browser, db):
    token = create("alice.ops")
    client = browser()
    started = client.post(f"{AUTH}/enrolment", json={"token": token})
    assert started.status_code == 201 and started.json()["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(started.json()["secret"])

    short = client.post(
        f"{AUTH}/enrolment/complete", json={"token": token, "password": "tiny horse 42", "code": totp.now()}
    )
    assert short.status_code == 422 and short.json()["type"] == PROBLEM + "password-rejected"
    assert "at least 15 characters" in short.json()["detail"] and "operator" in short.json()["detail"]
    named = client.post(
        f"{AUTH}/enrolment/complete",
        json={"token": token, "password": "alice.ops forever and ever", "code": totp.now()},
    )
    assert named.status_code == 422 and "username" in named.json()["detail"]
    wrong = client.post(f"{AUTH}/enrolment/complete", json={"token": token, "password": PASSWORD, "code": "000000"})
    assert wrong.status_code == 422 and wrong.json()["type"] == PROBLEM + "totp-code-refused"

    done = client.post(f"{AUTH}/enrolment/complete", json={"token": token, "password": PASSWORD, "code": totp.now()})
    assert done.status_code == 200, done.text
    assert len(done.json()["recovery_codes"]) == 10
    for path in ("enrolment", "enrolment/complete"):  # used up
        again = client.post(
            f"{AUTH}/{path}",
            json={"token": token, "password": PASSWORD, "code": totp.now()}
            if path.endswith("complete")
            else {"token": token},
        )
        assert again.status_code == 401 and again.json()["type"] == PROBLEM + "invalid-link"
    with platform_session(db) as session:
        row = session.execute(
            text("SELECT status, password_hash, totp_secret, enrolment_nonce FROM operator_accounts")
        ).one()
    assert row.status == "active" and row.password_hash.startswith("$argon2id$") and row.enrolment_nonce is None
    assert totp.secret.encode() not in bytes(row.totp_secret)  # sealed, not stored as typed


def test_a_new_link_ends_the_earlier_one_and_is_only_for_accounts_still_enrolling(create, browser, db, enrolled):
    first = create("bob.support", "operator_support")
    with platform_session(db) as session:
        second = _token(operator_accounts.issue_enrolment_link(session, db.master, "bob.support").url)
    assert browser().post(f"{AUTH}/enrolment", json={"token": first}).status_code == 401
    assert browser().post(f"{AUTH}/enrolment", json={"token": second}).status_code == 201
    enrolled("carol.ciso", "ciso")
    with platform_session(db) as session, pytest.raises(Conflict, match="not enrolled yet"):
        operator_accounts.issue_enrolment_link(session, db.master, "carol.ciso")


def test_usernames_and_roles_are_checked(db):
    with platform_session(db) as session:
        for username, role, message in (
            ("Eve Ops", "operator_ops", "username"),
            ("eve", "tenant_admin", "not an operator role"),
        ):
            with pytest.raises(InvalidInput, match=message):
                operator_accounts.create_operator(session, db.keyring, db.master, username, role)
        operator_accounts.create_operator(session, db.keyring, db.master, "eve", "dpo")
        with pytest.raises(Conflict, match="exists already"):
            operator_accounts.create_operator(session, db.keyring, db.master, "EVE", "dpo")


# -- signing in --------------------------------------------------------------------------------


def test_a_password_alone_authenticates_nothing_the_second_factor_completes_the_sign_in(enrolled, browser, db):
    totp, codes = enrolled("dora.ops")
    before = _head(db)
    client = browser()
    assert _login(client, "dora.ops", "not the password at all!").status_code == 401
    signed = _login(client, "dora.ops")
    assert signed.status_code == 200 and signed.json()["mfa_required"] is True
    pending_cookie = client.cookies.get("bw_operator_session")
    assert client.get(f"{AUTH}/me").status_code == 401
    assert client.get("/api/v1/operator/tenants").status_code == 401
    wrong = client.post(f"{AUTH}/mfa", json={"code": "000000"})
    assert wrong.status_code == 401 and wrong.json()["type"] == PROBLEM + "invalid-second-factor"
    passed = client.post(f"{AUTH}/mfa", json={"code": totp.now()})
    assert passed.status_code == 200 and passed.json()["mfa_required"] is False
    assert client.cookies.get("bw_operator_session") != pending_cookie  # a new value once privileges rose
    me = client.get(f"{AUTH}/me")
    assert me.status_code == 200 and me.json()["role"] == "operator_ops" and me.json()["username"] == "dora.ops"
    assert set(me.json()["permissions"]) == set(BUILTIN_PERMISSIONS[BuiltinRole.OPERATOR_OPS])

    # A recovery code is a second factor too, and works once.
    other = browser()
    _login(other, "dora.ops")
    assert other.post(f"{AUTH}/mfa", json={"code": codes[0]}).status_code == 200
    again = browser()
    _login(again, "dora.ops")
    assert again.post(f"{AUTH}/mfa", json={"code": codes[0]}).status_code == 401

    assert client.post(f"{AUTH}/logout").status_code == 204
    assert client.get(f"{AUTH}/me").status_code == 401

    seen = _platform_events(db, before)
    actions = [(e.action, e.outcome) for e in seen]
    for expected in (
        ("auth.sign_in.failed", "denied"),
        ("auth.sign_in.succeeded", "succeeded"),
        ("auth.mfa.failed", "denied"),
        ("auth.mfa.passed", "succeeded"),
        ("auth.session.viewed", "succeeded"),
        ("auth.signed_out", "succeeded"),
    ):
        assert expected in actions, expected
    assert "dora.ops" not in json.dumps([e.details for e in seen])  # nobody's username in the trail
    passed_event = next(e for e in seen if e.action == "auth.mfa.passed")
    assert (passed_event.actor_kind, passed_event.target_kind) == ("operator", "operator_account")


def test_an_unknown_operator_and_a_wrong_password_get_the_same_answer(enrolled, browser):
    enrolled("erin.ops")
    unknown = _login(browser(), "nobody.here")
    wrong = _login(browser(), "erin.ops", "not the password at all!")
    strip = lambda r: (r.status_code, {k: v for k, v in r.json().items() if k != "instance"})  # noqa: E731
    assert strip(unknown) == strip(wrong) and unknown.status_code == 401


def test_an_account_still_enrolling_or_disabled_cannot_sign_in_and_disabling_ends_its_sessions(
    create, signed_in, browser, db
):
    create("fred.ops")
    assert _login(browser(), "fred.ops").status_code == 401
    client = signed_in("gina.ops")
    assert client.get(f"{AUTH}/me").status_code == 200
    with platform_session(db) as session:
        operator_accounts.disable(session, "gina.ops")
    assert client.get(f"{AUTH}/me").status_code == 401
    assert _login(browser(), "gina.ops").status_code == 401
    with platform_session(db) as session:
        assert operator_accounts.enable(session, "gina.ops").status == "active"
    assert _login(browser(), "gina.ops").status_code == 200


def test_ten_wrong_passwords_lock_the_account_and_five_from_one_address_slow_that_address(enrolled, browser, db):
    enrolled("hank.ops")
    before = _head(db)
    for _ in range(throttle.ACCOUNT_LOCK_AFTER):  # each from a fresh address: only the account counts
        assert _login(browser(), "hank.ops", "not the password at all!").status_code == 401
    locked = _login(browser(), "hank.ops")  # the right password, while locked
    assert locked.status_code == 401
    seen = _platform_events(db, before)
    lock = [e for e in seen if e.action == "auth.account.locked"]
    assert lock and lock[0].details["consecutive_failures"] == throttle.ACCOUNT_LOCK_AFTER
    assert any(e.details.get("reason") == "account locked" for e in seen if e.action == "auth.sign_in.failed")

    enrolled("ivan.ops")
    same = browser()
    for _ in range(throttle.ADDRESS_FREE_FAILURES):
        assert _login(same, "ivan.ops", "not the password at all!").status_code == 401
    slowed = _login(same, "ivan.ops")
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) > 0


# -- the principal -----------------------------------------------------------------------------


def test_a_signed_in_operator_acts_exactly_like_an_operator_token(signed_in, tenant, client_for, db):
    populate(client_for(tenant))
    ops = signed_in("jane.ops")
    assert ops.get("/api/v1/operator/tenants").status_code == 200  # a platform permission of operator_ops
    refused = ops.get("/api/v1/patrons")
    assert refused.status_code == 403  # no tenant data without a grant
    support = signed_in("kim.support", "operator_support")
    assert support.get("/api/v1/operator/tenants").status_code == 403  # not in operator_support's role

    asked = ops.post(
        "/api/v1/operator/grants",
        json={
            "tenant_id": str(tenant.id),
            "scope": "read",
            "justification": "patron cannot sign in, INC-7",
            "ticket": "INC-7",
            "hours": 1,
        },
    )
    assert asked.status_code == 201, asked.text
    grant_id = asked.json()["id"]
    headers = {"X-Operator-Grant": grant_id}
    assert ops.get("/api/v1/patrons", headers=headers).status_code == 403  # not approved yet
    admin = Principal(PrincipalKind.API_TOKEN, tenant.id, tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    with tenant_session(db, tenant.id) as session:
        grants.approve_grant(session, admin, asked.json()["id"])
    listed = ops.get("/api/v1/patrons", headers=headers)
    assert listed.status_code == 200 and listed.json()["items"]
    assert ops.post("/api/v1/patrons", json={"name": "X"}, headers=headers).status_code == 403  # read scope
    assert support.get("/api/v1/patrons", headers=headers).status_code == 403  # another operator's grant
    with tenant_session(db, tenant.id) as session:
        used = session.execute(
            text(
                "SELECT actor_kind, grant_id FROM audit_events WHERE action = 'patron.listed' AND grant_id IS NOT NULL"
            )
        ).all()
    assert used and {(kind, str(grant)) for kind, grant in used} == {("operator", grant_id)}


# -- out of every tenant's reach ---------------------------------------------------------------


def test_no_tenant_transaction_can_read_or_write_operator_rows(enrolled, signed_in, tenant, db):
    signed_in("lena.ops")
    with platform_session(db) as session:
        assert session.execute(text("SELECT count(*) FROM operator_accounts")).scalar() == 1
        assert session.execute(text("SELECT count(*) FROM operator_sessions")).scalar() >= 1
    with tenant_session(db, tenant.id) as session:
        assert session.execute(text("SELECT count(*) FROM operator_accounts")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM operator_sessions")).scalar() == 0
        assert session.execute(text("UPDATE operator_accounts SET role = 'ciso'")).rowcount == 0
    with pytest.raises(ProgrammingError, match="row-level security"), tenant_session(db, tenant.id) as session:
        session.execute(
            text(
                "INSERT INTO operator_accounts (id, username, role, status) "
                "VALUES (gen_random_uuid(), 'mallory', 'ciso', 'enrolling')"
            )
        )
