"""Second factors as their holders and administrators use them, over HTTP against the real PostgreSQL.

Enrolling an authenticator app, registering a security key with the software authenticator of
tests/identity/test_mfa.py, signing in with either, and an administrator's reset. Argon2 runs at OWASP's
floor here, as in tests/identity/test_signin.py. Time moves by rewriting timestamps in SQL: inside a
test's transaction the database clock stands still.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, TENANT_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.crypto.fields import encrypt_field
from bookwarden.identity import passwords, sessions, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.enrolment import service as enrolment
from bookwarden.identity.mfa import service as mfa
from bookwarden.identity.models import Account, AccountKind, AccountStatus, SecurityKey
from bookwarden.identity.signin import service as signin
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import open_mail
from tests.helpers import grant, stored_hash
from tests.identity.test_mfa import CODE_FORMAT, SoftwareAuthenticator, b64url, from_b64url

PASSWORD = "violet tractor mango 42 harbour"
ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
RP = enrolment.relying_party()
ORIGIN = RP.origin  # what the browser reports for BOOKWARDEN_PUBLIC_URL (default: http://localhost:8000)
PROBLEM = "urn:bookwarden:problem:"

ME = "/api/v1/auth/me/mfa"
KEYS = f"{ME}/webauthn/credentials"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Hash and verify at OWASP's floor in these tests only; sign-in reads DEFAULT at call time."""
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _admin(tenant) -> Principal:
    return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, ADMIN)


@pytest.fixture
def make_account(in_tenant):
    """make_account(tenant, username, kind=..., roles=..., totp=...) -> an active Account signed in with PASSWORD."""

    def make(tenant, username, *, kind=AccountKind.STAFF, roles=(), totp: str | None = None) -> Account:
        with in_tenant(tenant) as session:
            account = accounts.create_account(
                session, _admin(tenant), kind=kind, username=username, email=f"{username}@alpha.example"
            )
            account.password_hash = stored_hash(PASSWORD, passwords.DEFAULT)
            account.status = AccountStatus.ACTIVE
            if totp is not None:
                key = session.keyring.subject_key(tenant.id, account.id)
                account.totp_secret = encrypt_field(key, tenant.id, "accounts", "totp_secret", account.id, totp)
            session.flush()
            for role in roles:
                grant(session, tenant.id, account.id, role)
            return account

    return make


def _login(client: TestClient, username: str, institution: str = "alpha"):
    response = client.post(
        "/api/v1/auth/login", json={"institution": institution, "username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()


def _signed_in(browser, username: str) -> TestClient:
    client = browser()
    assert _login(client, username)["mfa_required"] is False
    return client


def _cookie(client: TestClient) -> str:
    return client.cookies[sessions.COOKIE_NAME]


def _sql(in_tenant, tenant, statement: str, **params):
    with in_tenant(tenant) as session:
        return session.execute(text(statement), params)


def _stored(in_tenant, tenant, account_id) -> Account:
    with in_tenant(tenant) as session:
        return session.get(Account, (tenant.id, account_id), populate_existing=True)


def _wrong_code(totp: pyotp.TOTP) -> str:
    return "000000" if totp.now() != "000000" else "111111"


# -- the authenticator app -----------------------------------------------------------------


def test_totp_enrolment_end_to_end(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    client = _signed_in(browser, "ann")

    started = client.post(f"{ME}/totp")
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    uri = pyotp.parse_uri(started.json()["otpauth_uri"])
    assert uri.secret == secret and uri.issuer == "Alpha University" and uri.name == "ann"
    # Not a factor yet: the secret is held sealed, and sign-in asks for nothing more.
    assert _stored(in_tenant, tenant, account.id).totp_secret is None
    pending = _sql(in_tenant, tenant, "SELECT secret FROM totp_enrolments").scalar_one()
    assert secret.encode() not in pending
    assert _login(browser(), "ann")["mfa_required"] is False

    totp = pyotp.TOTP(secret)
    before = _cookie(client)
    confirming_code = totp.now()
    confirmed = client.post(f"{ME}/totp/confirm", json={"code": confirming_code})
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10 and all(CODE_FORMAT.fullmatch(c) for c in codes)
    # The session that proved the new factor has passed its second step, under a new cookie value.
    assert _cookie(client) != before
    assert client.get("/api/v1/auth/me").status_code == 200

    # The codes were shown once: only salted hashes are kept, and the enrolment is over.
    stored = _stored(in_tenant, tenant, account.id)
    assert len(stored.recovery_code_hashes) == 10
    assert not any(c.replace("-", "") in " ".join(stored.recovery_code_hashes) for c in codes)
    assert client.post(f"{ME}/totp/confirm", json={"code": totp.now()}).status_code == 409

    again = browser()
    assert _login(again, "ann")["mfa_required"] is True
    assert again.get("/api/v1/auth/me").status_code == 401
    assert again.post("/api/v1/auth/mfa", json={"code": confirming_code}).status_code == 401  # spent
    upcoming = totp.at(datetime.now(UTC) + timedelta(seconds=30))
    assert again.post("/api/v1/auth/mfa", json={"code": upcoming}).status_code == 200
    assert again.get("/api/v1/auth/me").status_code == 200

    with_code = browser()
    _login(with_code, "ann")
    assert with_code.post("/api/v1/auth/mfa", json={"code": codes[0]}).status_code == 200


def test_a_wrong_confirmation_code_leaves_totp_inactive(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    totp = pyotp.TOTP(client.post(f"{ME}/totp").json()["secret"])

    refused = client.post(f"{ME}/totp/confirm", json={"code": _wrong_code(totp)})
    assert refused.status_code == 422
    assert refused.json()["type"] == PROBLEM + "totp-code-refused"
    stored = _stored(in_tenant, tenant, account.id)
    assert stored.totp_secret is None and not stored.recovery_code_hashes
    assert _login(browser(), "ann")["mfa_required"] is False

    # The enrolment is still waiting for the right code, for ten minutes and no longer.
    _sql(in_tenant, tenant, "UPDATE totp_enrolments SET expires_at = now() - interval '1 second'")
    expired = client.post(f"{ME}/totp/confirm", json={"code": totp.now()})
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]
    assert _stored(in_tenant, tenant, account.id).totp_secret is None


def test_recovery_codes_are_regenerated_only_for_an_account_with_a_factor(browser, make_account, tenant):
    make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    refused = client.post(f"{ME}/recovery-codes")
    assert refused.status_code == 409 and "enrol" in refused.json()["detail"]

    totp = pyotp.TOTP(client.post(f"{ME}/totp").json()["secret"])
    old = client.post(f"{ME}/totp/confirm", json={"code": totp.now()}).json()["recovery_codes"]
    new = client.post(f"{ME}/recovery-codes").json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)

    later = browser()
    _login(later, "ann")
    assert later.post("/api/v1/auth/mfa", json={"code": old[0]}).status_code == 401
    assert later.post("/api/v1/auth/mfa", json={"code": new[0]}).status_code == 200


# -- security keys -------------------------------------------------------------------------


def _register(client: TestClient, authenticator: SoftwareAuthenticator, name: str = "Blue key"):
    options = client.post(f"{ME}/webauthn/options")
    assert options.status_code == 200, options.text
    response = authenticator.create(json.dumps(options.json()["options"]), origin=ORIGIN)
    return client.post(KEYS, json={"credential": response, "name": name})


def _sign_in_options(client: TestClient) -> str:
    response = client.post("/api/v1/auth/mfa/webauthn/options")
    assert response.status_code == 200, response.text
    return json.dumps(response.json()["options"])


def _answer(client: TestClient, assertion: dict):
    return client.post("/api/v1/auth/mfa/webauthn", json={"credential": assertion})


@pytest.fixture
def key_holder(browser, make_account, tenant):
    """A staff account "sam" with one security key registered through the API, and that key."""
    account = make_account(tenant, "sam")
    key = SoftwareAuthenticator()
    assert _register(_signed_in(browser, "sam"), key).status_code == 201
    return account, key


def test_a_security_key_registers_and_signs_in(browser, make_account, in_tenant, tenant):
    account = make_account(tenant, "sam")
    client = _signed_in(browser, "sam")
    options = client.post(f"{ME}/webauthn/options").json()["options"]
    assert options["rp"] == {"id": RP.rp_id, "name": "Alpha University"} and options["attestation"] == "none"
    handle = from_b64url(options["user"]["id"])
    assert account.id.bytes not in handle and b"sam" not in handle  # the user handle names nobody

    key = SoftwareAuthenticator()
    before = _cookie(client)
    added = client.post(KEYS, json={"credential": key.create(json.dumps(options), origin=ORIGIN), "name": "Blue key"})
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["name"] == "Blue key" and body["transports"] == ["usb", "nfc"] and body["last_used_at"] is None
    assert len(body["recovery_codes"]) == 10  # a first factor comes with recovery codes
    assert _cookie(client) != before and client.get("/api/v1/auth/me").status_code == 200
    assert [k["name"] for k in client.get(KEYS).json()] == ["Blue key"]

    # A registered key is a factor: sign-in now waits for it.
    later = browser()
    assert _login(later, "sam")["mfa_required"] is True
    options = json.loads(_sign_in_options(later))
    assert [from_b64url(c["id"]) for c in options["allowCredentials"]] == [key.credential_id]
    pending = _cookie(later)
    done = _answer(later, key.get(json.dumps(options), origin=ORIGIN))
    assert done.status_code == 200, done.text
    assert done.json() == {"account_id": str(account.id), "mfa_required": False}
    assert _cookie(later) != pending and later.get("/api/v1/auth/me").status_code == 200
    with in_tenant(tenant) as session:
        stored = session.scalars(select(SecurityKey)).one()
        assert stored.sign_count == key.sign_count and stored.last_used_at is not None


def test_a_security_key_alone_is_a_factor_sign_in_waits_for(browser, key_holder, in_tenant, tenant):
    account, key = key_holder
    _sql(in_tenant, tenant, "UPDATE accounts SET recovery_code_hashes = NULL")
    assert _login(browser(), "sam")["mfa_required"] is True
    # It also satisfies a role that requires a second factor.
    with in_tenant(tenant) as session:
        grant(session, tenant.id, account.id, BuiltinRole.SECURITY_OFFICER)
    client = browser()
    assert _login(client, "sam")["mfa_required"] is True
    assert _answer(client, key.get(_sign_in_options(client), origin=ORIGIN)).status_code == 200


def test_refused_assertions_count_like_wrong_codes(browser, key_holder, in_tenant, tenant):
    account, key = key_holder
    client = browser()
    _login(client, "sam")
    for _ in range(signin.SECOND_FACTOR_TRIES):
        _sign_in_options(client)
        assert _answer(client, key.get(_any_options(), origin=ORIGIN)).status_code == 401
    # The pending session is over: sign in again.
    assert client.post("/api/v1/auth/mfa/webauthn/options").status_code == 401
    with in_tenant(tenant) as session:
        assert throttle.account_failures(session, account.id) == 1 + signin.SECOND_FACTOR_TRIES


def test_a_replayed_assertion_is_refused(browser, key_holder):
    _, key = key_holder
    first = browser()
    _login(first, "sam")
    assertion = key.get(_sign_in_options(first), origin=ORIGIN)
    assert _answer(first, assertion).status_code == 200

    second = browser()
    _login(second, "sam")
    _sign_in_options(second)
    replayed = _answer(second, assertion)
    assert replayed.status_code == 401 and replayed.json()["type"] == PROBLEM + "mfa-failed"
    assert second.get("/api/v1/auth/me").status_code == 401


def test_an_assertion_for_another_challenge_is_refused(browser, key_holder):
    _, key = key_holder
    laptop, phone = browser(), browser()
    _login(laptop, "sam")
    _login(phone, "sam")
    phones_options = _sign_in_options(phone)
    _sign_in_options(laptop)
    # The laptop answers the phone's challenge: challenges are bound to the session that asked.
    refused = _answer(laptop, key.get(phones_options, origin=ORIGIN))
    assert refused.status_code == 401 and "different request" in refused.json()["detail"]

    _sign_in_options(laptop)
    assert _answer(laptop, key.get(_any_options(), origin=ORIGIN)).status_code == 401
    assert laptop.get("/api/v1/auth/me").status_code == 401


def test_an_expired_challenge_is_refused(browser, key_holder, in_tenant, tenant):
    _, key = key_holder
    client = browser()
    _login(client, "sam")
    options = _sign_in_options(client)
    lifetime = _sql(in_tenant, tenant, "SELECT expires_at - created_at FROM mfa_challenges").scalar_one()
    assert lifetime == mfa.CEREMONY_TIMEOUT
    _sql(in_tenant, tenant, "UPDATE mfa_challenges SET expires_at = now() - interval '1 second'")
    refused = _answer(client, key.get(options, origin=ORIGIN))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


def test_a_challenge_is_answered_once(browser, key_holder, in_tenant, tenant):
    _, key = key_holder
    client = browser()
    _login(client, "sam")
    options = _sign_in_options(client)
    assert _answer(client, key.get(options, origin="https://evil.example")).status_code == 401
    # The refused answer spent the challenge: a good answer to the same options is refused too.
    assert _sql(in_tenant, tenant, "SELECT count(*) FROM mfa_challenges").scalar_one() == 0
    assert _answer(client, key.get(options, origin=ORIGIN)).status_code == 401
    assert _answer(client, key.get(_sign_in_options(client), origin=ORIGIN)).status_code == 200


def test_the_security_key_step_checks_the_origin_of_the_request(browser, key_holder):
    client = browser()
    _login(client, "sam")
    del client.headers["X-Requested-With"]
    assert client.post("/api/v1/auth/mfa/webauthn/options").status_code == 403
    assert browser().post("/api/v1/auth/mfa/webauthn/options").status_code == 401  # no sign-in waiting


def test_a_patron_cannot_register_a_security_key_but_can_enrol_an_app(browser, make_account, tenant):
    make_account(tenant, "pat", kind=AccountKind.PATRON)
    client = _signed_in(browser, "pat")
    for refused in (
        client.post(f"{ME}/webauthn/options"),
        client.post(KEYS, json={"credential": SoftwareAuthenticator().create(_any_options(), origin=ORIGIN)}),
    ):
        assert refused.status_code == 403
        assert refused.json()["type"] == PROBLEM + "security-keys-staff-only"
        assert "authenticator app" in refused.json()["detail"]
    assert client.post(f"{ME}/totp").status_code == 201


def _any_options() -> str:
    """Options for a challenge this server never issued."""
    return json.dumps({"challenge": b64url(os.urandom(32)), "rp": {"id": RP.rp_id}, "rpId": RP.rp_id})


def test_keys_are_renamed_and_listed_by_their_holder_only(browser, key_holder, make_account, tenant):
    make_account(tenant, "ann")
    owner = browser()
    _login(owner, "sam")
    assert _answer(owner, key_holder[1].get(_sign_in_options(owner), origin=ORIGIN)).status_code == 200
    key_id = owner.get(KEYS).json()[0]["id"]

    renamed = owner.patch(f"{KEYS}/{key_id}", json={"name": "Keyring key"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Keyring key"
    assert owner.patch(f"{KEYS}/{key_id}", json={"name": " "}).status_code == 422
    assert owner.patch(f"{KEYS}/{key_id}", json={"name": "x" * 101}).status_code == 422

    stranger = _signed_in(browser, "ann")
    assert stranger.get(KEYS).json() == []
    assert stranger.patch(f"{KEYS}/{key_id}", json={"name": "Mine now"}).status_code == 404
    assert stranger.delete(f"{KEYS}/{key_id}").status_code == 404
    assert owner.get(KEYS).json()[0]["name"] == "Keyring key"


def test_removing_the_last_factor_without_an_mfa_role_returns_to_a_password(browser, key_holder, in_tenant, tenant):
    account, key = key_holder
    client = browser()
    _login(client, "sam")
    assert _answer(client, key.get(_sign_in_options(client), origin=ORIGIN)).status_code == 200
    key_id = client.get(KEYS).json()[0]["id"]
    assert client.delete(f"{KEYS}/{key_id}").status_code == 204
    stored = _stored(in_tenant, tenant, account.id)
    assert not stored.recovery_code_hashes  # no codes left standing in for a factor that is gone
    assert _login(browser(), "sam")["mfa_required"] is False


def test_an_admin_cannot_remove_the_last_factor_their_role_requires(browser, make_account, in_tenant, tenant):
    secret = mfa.new_totp_secret()
    account = make_account(tenant, "ada", roles=[BuiltinRole.TENANT_ADMIN], totp=secret)
    client = browser()
    assert _login(client, "ada")["mfa_required"] is True
    assert client.post("/api/v1/auth/mfa", json={"code": pyotp.TOTP(secret).now()}).status_code == 200
    assert _register(client, SoftwareAuthenticator()).status_code == 201

    # Two factors: either may go, but not both.
    assert client.delete(f"{ME}/totp").status_code == 204
    key_id = client.get(KEYS).json()[0]["id"]
    refused = client.delete(f"{KEYS}/{key_id}")
    assert refused.status_code == 409
    assert refused.json()["type"] == PROBLEM + "last-second-factor"
    assert "tenant_admin" in refused.json()["detail"]
    assert [k["id"] for k in client.get(KEYS).json()] == [key_id]
    assert _stored(in_tenant, tenant, account.id).recovery_code_hashes


# -- an administrator's reset --------------------------------------------------------------


def test_an_admin_reset_clears_every_factor_ends_sessions_and_tells_the_security_contacts(
    browser, key_holder, client_for, in_tenant, tenant
):
    account, key = key_holder
    with in_tenant(tenant) as session:
        add_security_contact(session, "security@alpha.example")
    client = browser()
    _login(client, "sam")
    assert _answer(client, key.get(_sign_in_options(client), origin=ORIGIN)).status_code == 200
    assert client.post(f"{ME}/totp/confirm", json={"code": "123456"}).status_code == 409  # nothing pending
    totp = pyotp.TOTP(client.post(f"{ME}/totp").json()["secret"])
    assert client.post(f"{ME}/totp/confirm", json={"code": totp.now()}).status_code == 200

    admin = client_for(tenant, permissions=ADMIN)
    reset = admin.post(f"/api/v1/accounts/{account.id}/mfa-reset")
    assert reset.status_code == 200, reset.text
    assert reset.json() == {
        "account_id": str(account.id),
        "authenticator_app_removed": True,
        "security_keys_removed": 1,
        "recovery_codes_removed": 10,
        "sessions_ended": 2,  # the one that registered the key, and this one
    }
    assert client.get("/api/v1/auth/me").status_code == 401
    stored = _stored(in_tenant, tenant, account.id)
    assert stored.totp_secret is None and stored.totp_last_step is None and stored.recovery_code_hashes is None
    with in_tenant(tenant) as session:
        assert session.scalars(select(SecurityKey)).all() == []
        notices = [
            (row.category, open_mail(session, row))
            for row in session.scalars(select(OutboxMessage)).all()
            if "second factor reset" in open_mail(session, row).subject
        ]
    assert len(notices) == 1
    category, mail = notices[0]
    assert category == MailCategory.SECURITY and mail.to == "security@alpha.example"
    assert str(account.id) in mail.body and "security keys removed: 1" in mail.body
    assert _login(browser(), "sam")["mfa_required"] is False


def test_another_tenants_admin_gets_404_on_mfa_reset(key_holder, client_for, in_tenant, tenant, other_tenant):
    account, _ = key_holder
    outsider = client_for(other_tenant, permissions=ADMIN)
    refused = outsider.post(f"/api/v1/accounts/{account.id}/mfa-reset")
    assert refused.status_code == 404
    with in_tenant(tenant) as session:
        assert len(session.scalars(select(SecurityKey)).all()) == 1


def test_mfa_reset_needs_accounts_manage_and_is_not_for_ones_own_account(browser, client_for, make_account, tenant):
    target = make_account(tenant, "ann")
    staff = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.SECURITY_OFFICER])
    assert staff.post(f"/api/v1/accounts/{target.id}/mfa-reset").status_code == 403

    secret = mfa.new_totp_secret()
    ada = make_account(tenant, "ada", roles=[BuiltinRole.TENANT_ADMIN], totp=secret)
    client = browser()
    _login(client, "ada")
    client.post("/api/v1/auth/mfa", json={"code": pyotp.TOTP(secret).now()})
    own = client.post(f"/api/v1/accounts/{ada.id}/mfa-reset")
    assert own.status_code == 403 and "another administrator" in own.json()["detail"]
    assert client.post(f"/api/v1/accounts/{target.id}/mfa-reset").status_code == 200


# -- who may call the self-service routes --------------------------------------------------

# A fixed id (not uuid4 at import): parallel workers must collect the same test names.
NO_SUCH_KEY = uuid.UUID(int=0xB00C)
SELF_SERVICE = [
    ("post", f"{ME}/totp", None),
    ("post", f"{ME}/totp/confirm", {"code": "123456"}),
    ("delete", f"{ME}/totp", None),
    ("post", f"{ME}/recovery-codes", None),
    ("post", f"{ME}/webauthn/options", None),
    ("post", KEYS, {"credential": {}, "name": "k"}),
    ("get", KEYS, None),
    ("patch", f"{KEYS}/{NO_SUCH_KEY}", {"name": "k"}),
    ("delete", f"{KEYS}/{NO_SUCH_KEY}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), SELF_SERVICE)
def test_an_api_token_cannot_manage_second_factors(client_for, tenant, method, path, body):
    client = client_for(tenant, permissions=TENANT_PERMISSIONS)
    response = client.request(method, path, json=body)
    assert response.status_code == 403, response.text
    assert "API token" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), SELF_SERVICE)
def test_the_self_service_routes_need_a_sign_in(app, method, path, body):
    response = TestClient(app, raise_server_exceptions=False).request(method, path, json=body)
    assert response.status_code == 401


def test_a_token_sent_with_a_session_cookie_still_cannot(browser, make_account, issue_token, tenant):
    make_account(tenant, "ann")
    client = _signed_in(browser, "ann")
    client.headers["Authorization"] = f"Bearer {issue_token(tenant, permissions=TENANT_PERMISSIONS)}"
    assert client.post(f"{ME}/totp").status_code == 403


# -- where security keys are used ----------------------------------------------------------


@pytest.mark.parametrize(
    ("public_url", "origin", "rp_id"),
    [
        ("http://127.0.0.1:8000", "http://localhost:8000", "localhost"),
        ("http://[::1]:8000/", "http://localhost:8000", "localhost"),
        ("http://localhost", "http://localhost", "localhost"),
        ("https://library.example.org/", "https://library.example.org", "library.example.org"),
        ("https://Library.Example.org:443/console", "https://library.example.org", "library.example.org"),
        ("https://library.example.org:8443", "https://library.example.org:8443", "library.example.org"),
    ],
)
def test_origin_and_rp_id_come_from_the_public_url(public_url, origin, rp_id):
    rp = enrolment.RelyingParty(public_url=public_url)
    assert (rp.origin, rp.rp_id) == (origin, rp_id)


@pytest.mark.parametrize(
    "public_url", ["http://library.example.org", "https://10.0.0.7", "ftp://library.example.org", "library", ""]
)
def test_public_urls_security_keys_cannot_work_at_are_refused(public_url):
    with pytest.raises(ValueError, match="BOOKWARDEN_PUBLIC_URL"):
        enrolment.RelyingParty(public_url=public_url)


def test_the_default_public_url_is_the_development_server(monkeypatch):
    monkeypatch.delenv("BOOKWARDEN_PUBLIC_URL", raising=False)
    assert enrolment.RelyingParty().public_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("BOOKWARDEN_PUBLIC_URL", "https://books.example.edu")
    assert enrolment.RelyingParty().rp_id == "books.example.edu"
