"""The staff and operator API as a caller sees it: authentication, scopes, suspension,
pagination, problem details, the sensitive-data guard, health, metrics and logs."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bookwarden.api.deps import requires
from bookwarden.core.permissions import LIBRARY_READ, Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.tokens import service as tokens
from tests.helpers import populate

PROBLEM = "application/problem+json"


def _anonymous(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


# -- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer bwt_forged", "Basic dXNlcjpwYXNz", "Bearer bwo_forged"])
def test_missing_or_forged_tokens_are_refused(app, tenant, header):
    client = _anonymous(app)
    response = client.get("/api/v1/patrons", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:bookwarden:problem:unauthenticated"


def test_expired_and_revoked_tokens_are_refused_like_unknown_ones(app, db, tenant):
    with tenant_session(db, tenant.id) as session:
        expired_row, expired = tokens.issue_api_token(session, "old", [Permission.PATRONS_READ], timedelta(minutes=5))
        revoked_row, revoked = tokens.issue_api_token(session, "gone", [Permission.PATRONS_READ], timedelta(days=1))
        session.execute(
            text("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = :i"), {"i": expired_row.id}
        )
        assert tokens.revoke_api_token(session, revoked_row.id)
    client = _anonymous(app)
    answers = [
        client.get("/api/v1/patrons", headers={"Authorization": f"Bearer {t}"}).json()
        for t in (expired, revoked, "bwt_" + "x" * 43)
    ]
    assert {a["detail"] for a in answers} == {answers[0]["detail"]}
    assert all(a["status"] == 401 for a in answers)


def test_tokens_are_stored_only_as_hashes(db, tenant, issue_token):
    token = issue_token(tenant)
    with tenant_session(db, tenant.id) as session:
        stored = session.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert tokens.token_hash(token) in stored
    assert all(token.encode() not in h for h in stored)


def test_a_read_only_token_cannot_write(client_for, tenant):
    client = client_for(tenant, permissions=LIBRARY_READ)
    assert client.get("/api/v1/patrons").status_code == 200
    response = client.post("/api/v1/patrons", json={"name": "Someone"})
    assert response.status_code == 403
    assert "patrons.write" in response.json()["detail"]


def test_token_scopes_are_checked_when_issued(db, tenant):
    with tenant_session(db, tenant.id) as session, pytest.raises(Exception, match="not allowed"):
        tokens.issue_api_token(session, "x", [Permission.PLATFORM_TENANTS_MANAGE], timedelta(days=1))


def test_every_route_declares_the_permission_it_needs(app):
    open_routes = {
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/redoc",
        # Sign-in: before authentication (login, mfa), or acting only on the caller's own session
        # or account, which every signed-in account may do whatever its roles (logout, me).
        "/api/v1/auth/login",
        "/api/v1/auth/mfa",
        "/api/v1/auth/logout",
        "/api/v1/auth/logout-everywhere",
        "/api/v1/auth/me",
        # One-time links: authorised by the signed link itself (accept-invitation, reset-password),
        # or answering everyone alike whether or not the account exists (password-reset).
        "/api/v1/auth/accept-invitation",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/reset-password",
        # A security key as the second step of a sign-in: before authentication, like /auth/mfa.
        "/api/v1/auth/mfa/webauthn/options",
        "/api/v1/auth/mfa/webauthn",
        # The signed-in account's own second factors: they require an account session (an API token
        # gets 403) and reach nothing but the caller's own account; every account may protect itself
        # whatever its roles, so no catalogue permission fits (identity/enrolment/routes.py).
        "/api/v1/auth/me/mfa/totp",
        "/api/v1/auth/me/mfa/totp/confirm",
        "/api/v1/auth/me/mfa/recovery-codes",
        "/api/v1/auth/me/mfa/webauthn/options",
        "/api/v1/auth/me/mfa/webauthn/credentials",
        "/api/v1/auth/me/mfa/webauthn/credentials/{key_id}",
        # An administrator's enrolment link after an MFA reset: authorised by the signed one-time link and
        # the account's password, then by the pending session it opened (identity/enrolment/links.py).
        "/api/v1/auth/mfa-enrolment",
        "/api/v1/auth/mfa-enrolment/confirm",
        # A person's own API tokens (identity/tokens/routes.py): minted from the account's own session (never
        # by a token), within what it holds now; listed and revoked by the owner only, through a session or one
        # of their tokens. Like /auth/me, open to every account whatever its roles; nothing but one's own.
        "/api/v1/auth/me/tokens",
        "/api/v1/auth/me/tokens/{token_id}/revoke",
        # The same for operators: minting takes an operator session (second factor passed), never a token.
        "/api/v1/operator/auth/me/tokens",
        "/api/v1/operator/auth/me/tokens/{token_id}/revoke",
        # Operators signing in (identity/operators/routes.py): enrolment authorised by the one-time link,
        # login and mfa before authentication, logout and me on the caller's own session only.
        "/api/v1/operator/auth/enrolment",
        "/api/v1/operator/auth/enrolment/complete",
        "/api/v1/operator/auth/login",
        "/api/v1/operator/auth/mfa",
        "/api/v1/operator/auth/logout",
        "/api/v1/operator/auth/me",
        # Institutional sign-on (identity/saml/routes.py), before authentication and on no one's data:
        # SP metadata is public by nature, login only sends the browser to its IdP, and the ACS is
        # authorised by the IdP's signature plus the cookie of the browser that started the sign-in.
        "/api/v1/sso/saml/{tenant_slug}/metadata",
        "/api/v1/sso/saml/{tenant_slug}/login",
        "/api/v1/sso/saml/{tenant_slug}/acs",
        # Self-registration (privacy/registration/service.py): a person who is no patron yet registers; off
        # unless the institution opens it, throttled per address, the age gate before anything is kept.
        "/api/v1/self-registration",
        # Its address confirmation: authorised by the signed one-time link mailed to the address itself.
        "/api/v1/self-registration/confirm",
        # One-click unsubscribe (RFC 8058, privacy/consent/unsubscribe.py): authorised by the link's signed token, which
        # names institution, patron and topic; a mail client POSTs it with no sign-in, and GET only shows a page.
        "/api/v1/unsubscribe/{token}",
        # The portal's cookie banner, before anyone signs in: it records and reads this browser's own choice only
        # (a random id in its own cookie), never a patron's data (privacy/consent/routes.py).
        "/api/v1/portal/{tenant_slug}/cookie-choice",
        # The institution's privacy notice in force (privacy/notices/routes.py): public by nature, read before
        # anyone gives their data; it shows no one's data.
        "/api/v1/portal/{tenant_slug}/privacy-notice",
        # Reports of suspected unauthorised access or of a child's data without an account (privacy/concerns/
        # routes.py): throttled per network address, screened, and it reads nothing back to the reporter.
        "/api/v1/privacy/concerns/form",
        # Data-subject requests without an account (privacy/requests/routes.py): the form and the forwarding
        # of an inquiry answer everyone alike, and the verification is authorised by the one-time code
        # mailed to the address on file.
        "/api/v1/privacy/requests/form",
        "/api/v1/privacy/requests/form/verify",
        "/api/v1/privacy/inquiries/forward",
        # An access package's download link: the link's random token is the credential (privacy/subjects/export.py).
        "/api/v1/privacy/subject-exports/download/{token}",
        # An offboarded institution's final export: the signed, expiring link is the credential (backup/offboarding.py).
        "/api/v1/offboarding/export/{token}",
        # Pages open to everyone (web/): the start page holds no data; the sign-in pages come before
        # authentication and call the same services as /api/v1/auth/login and /auth/mfa.
        "/",
        "/signin",
        "/signin/second-factor",
        "/signin/done",
        "/signout",
        # The consoles' home pages need a sign-in only: each shows the entries the person's permissions open
        # (web/consoles); their stylesheet is the same for everyone and holds no data.
        "/console",
        "/operator",
        "/console/console.css",
        "/operator/signin",
        "/operator/signin/second-factor",
        "/operator/signout",
        # One-time link pages and their requests (identity/accounts/pages.py, identity/operators/pages.py):
        # authorised by the link, or answering everyone alike, as the API's link routes.
        "/signin/forgot",
        "/signin/sso",
        "/reset-password",
        "/accept-invitation",
        "/operator/enrol",
        "/enrol-second-factor",
        # The privacy notice (public), self-registration and its confirmation link (privacy/*/pages.py).
        "/privacy-notice/{tenant_slug}",
        "/register",
        "/confirm-email",
    }
    checked = 0
    for route in _api_routes(app.routes):
        if route.path in open_routes:
            continue
        declared = [
            d.call.required_permission
            for d in _all_dependencies(route.dependant)
            if hasattr(d.call, "required_permission")
        ]
        assert len(declared) == 1, f"{route.path} declares {declared}"
        checked += 1
    assert checked >= 30


def _api_routes(routes):
    for route in routes:
        if hasattr(route, "original_router"):  # an included router
            yield from _api_routes(route.original_router.routes)
        elif hasattr(route, "dependant"):
            yield route
        else:
            assert route.path in {"/openapi.json", "/docs", "/redoc", "/static"}, route.path


def _all_dependencies(dependant):
    for dep in dependant.dependencies:
        yield dep
        yield from _all_dependencies(dep)


# -- operators and suspension --------------------------------------------------------------


def test_operator_manages_tenants_but_reaches_no_tenant_data(app, operator_token, tenant, client_for):
    populate(client_for(tenant))
    operator = _anonymous(app)
    operator.headers["Authorization"] = f"Bearer {operator_token}"
    created = operator.post("/api/v1/operator/tenants", json={"slug": "gamma", "name": "Gamma College"})
    assert created.status_code == 201
    assert {t["slug"] for t in operator.get("/api/v1/operator/tenants").json()} >= {"alpha", "gamma"}
    assert operator.post("/api/v1/operator/tenants", json={"slug": "gamma", "name": "Again"}).status_code == 409
    for path in ("/api/v1/patrons", "/api/v1/loans", "/api/v1/posts"):
        assert operator.get(path).status_code == 403


def test_tenant_tokens_cannot_use_the_operator_api(client_for, tenant):
    response = client_for(tenant).get("/api/v1/operator/tenants")
    assert response.status_code == 403


def test_a_suspended_tenant_is_refused_everything_until_resumed(app, operator_token, tenant, other_tenant, client_for):
    client, other = client_for(tenant), client_for(other_tenant)
    made = populate(client)
    patron = next(iter(made.values()))
    operator = _anonymous(app)
    operator.headers["Authorization"] = f"Bearer {operator_token}"
    suspended = operator.post(f"/api/v1/operator/tenants/{tenant.id}/suspend", json={"reason": "unpaid invoice"})
    assert suspended.json()["status"] == "suspended"

    for response in (
        client.get("/api/v1/patrons"),
        client.get(f"/api/v1/patrons/{patron['id']}"),
        client.post("/api/v1/patrons", json={"name": "New"}),
        client.delete(f"/api/v1/patrons/{patron['id']}"),
    ):
        assert response.status_code == 403
        assert response.json()["type"] == "urn:bookwarden:problem:tenant-suspended"
        assert "unpaid invoice" in response.json()["detail"]
    assert other.get("/api/v1/patrons").status_code == 200  # others unaffected

    operator.post(f"/api/v1/operator/tenants/{tenant.id}/resume")
    assert client.get(f"/api/v1/patrons/{patron['id']}").json()["name"] == patron["name"]


# -- records -------------------------------------------------------------------------------


def test_patron_crud_round_trip(client_for, tenant):
    client = client_for(tenant)
    made = populate(client)
    patron = made[next(k for k in made if k.table == "patrons")]
    assert client.get(f"/api/v1/patrons/{patron['id']}").json() == patron
    changed = client.patch(f"/api/v1/patrons/{patron['id']}", json={"phone": None, "affiliation": "alumni"}).json()
    assert changed["phone"] is None and changed["affiliation"] == "alumni" and changed["name"] == patron["name"]
    assert client.patch(f"/api/v1/patrons/{patron['id']}", json={"name": None}).status_code == 422
    assert client.delete(f"/api/v1/patrons/{patron['id']}").status_code == 202
    assert client.get(f"/api/v1/patrons/{patron['id']}").status_code == 404
    # Deleting a patron hides their activity with them at once (tests/library/test_patron_deletion.py: the rest).
    for path in ("loans", "searches", "reading-lists", "reading-list-items", "posts"):
        assert client.get(f"/api/v1/{path}").json()["items"] == []


def test_cursor_pagination_walks_every_record_once(client_for, tenant):
    client = client_for(tenant)
    created = {client.post("/api/v1/patrons", json={"name": f"P{i}"}).json()["id"] for i in range(7)}
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/patrons", params=params).json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and set(seen) == created


@pytest.mark.parametrize("params", [{"cursor": "!!"}, {"limit": 0}, {"limit": 201}, {"limit": "ten"}])
def test_bad_paging_parameters_get_a_problem_not_a_crash(client_for, tenant, params):
    response = client_for(tenant).get("/api/v1/patrons", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[]",
        "null",
        json.dumps({"name": 5}),
        json.dumps({"name": ""}),
        json.dumps({"name": "x", "birth_date": "31/12/2000"}),
        json.dumps({"name": "x", "email": "not-an-email"}),
    ],
)
def test_bad_input_gets_a_problem_and_stores_nothing(client_for, tenant, db, body):
    client = client_for(tenant)
    response = client.post("/api/v1/patrons", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:bookwarden:problem:validation-error" and problem["errors"]
    assert client.get("/api/v1/patrons").json()["items"] == []


def test_validation_errors_never_echo_the_submitted_value(client_for, tenant):
    response = client_for(tenant).post("/api/v1/patrons", json={"name": "x", "email": "secret.person@nowhere"})
    assert response.status_code == 422
    assert "secret.person" not in response.text


# -- sensitive data ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("patrons", "postal_address", "4111 1111 1111 1111"),
        ("patrons", "name", "card 5555-5555-5555-4444"),
        ("posts", "body", "please refund to DE89 3704 0044 0532 0130 00"),
        ("posts", "body", "my account number is 12345678, sort code 12-34-56"),
        ("searches", "query", "378282246310005"),
    ],
)
def test_payment_and_bank_data_are_refused_naming_the_field_and_nothing_is_stored(
    client_for, tenant, path, field, value
):
    client = client_for(tenant)
    patron = client.post("/api/v1/patrons", json={"name": "Card Holder"}).json()
    body = {
        "patrons": {"name": "Someone"},
        "posts": {"patron_id": patron["id"], "board": "b", "body": "hi"},
        "searches": {"patron_id": patron["id"], "query": "q"},
    }[path] | {field: value}
    before = client.get(f"/api/v1/{path}").json()["items"]
    response = client.post(f"/api/v1/{path}", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:bookwarden:problem:sensitive-data-refused"
    assert f'"{field}"' in problem["detail"] and problem["errors"][0]["field"] == field
    assert not any(ch.isdigit() for ch in problem["detail"].split("(")[0])  # the number is never echoed
    assert client.get(f"/api/v1/{path}").json()["items"] == before


def test_sensitive_data_is_refused_on_update_too(client_for, tenant):
    client = client_for(tenant)
    patron = client.post("/api/v1/patrons", json={"name": "Someone"}).json()
    response = client.patch(
        f"/api/v1/patrons/{patron['id']}", json={"postal_address": "IBAN GB82 WEST 1234 5698 7654 32"}
    )
    assert response.status_code == 422
    assert client.get(f"/api/v1/patrons/{patron['id']}").json()["postal_address"] is None


def test_library_barcodes_and_phone_numbers_are_not_mistaken_for_cards(client_for, tenant):
    response = client_for(tenant).post(
        "/api/v1/patrons",
        json={
            "name": "Ordinary",
            "barcode": "21234000123456",
            "phone": "+1 555 0100",
            "institutional_id": "4000123456",
        },
    )
    assert response.status_code == 201


# -- operations ----------------------------------------------------------------------------


def test_health_and_metrics(db, home, tenant, issue_token):
    from bookwarden.api.app import create_app
    from bookwarden.core.config import Settings

    scraper_token = "s" * 43
    app = create_app(db, Settings(home=home, metrics_token=scraper_token))
    client = _anonymous(app)
    assert client.get("/healthz").json() == {"status": "ok"}
    client.get("/api/v1/patrons", headers={"Authorization": f"Bearer {issue_token(tenant)}"})
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {scraper_token}"}).text
    assert 'bookwarden_http_requests_total{method="GET",route="/api/v1/patrons",status="200"}' in metrics


def test_every_response_carries_a_request_id_and_a_given_one_is_kept(app):
    client = _anonymous(app)
    assert uuid.UUID(client.get("/healthz").headers["x-request-id"])
    echoed = client.get("/healthz", headers={"X-Request-ID": "abcdef12-3456"}).headers["x-request-id"]
    again = client.get("/healthz", headers={"X-Request-ID": "abcdef12-3456"}).headers["x-request-id"]
    assert echoed.startswith("abcdef12-3456-") and again.startswith("abcdef12-3456-")
    assert echoed != again  # a reused id still names each request apart (usage metering counts them)
    assert len(client.get("/healthz", headers={"X-Request-ID": "a" * 64}).headers["x-request-id"]) == 64
    assert client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"


@pytest.fixture
def json_logs():
    import structlog

    from bookwarden.core import logs

    logs.configure("INFO")
    yield
    structlog.reset_defaults()  # the configured logger writes to this test's captured stdout


def test_logs_are_json_with_request_ids_and_never_secrets_or_personal_data(app, tenant, issue_token, capsys, json_logs):
    token = issue_token(tenant)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {token}"
    created = client.post("/api/v1/patrons", json={"name": "Hedy Lamarr", "email": "hedy@example.org"}).json()
    client.get(f"/api/v1/patrons/{created['id']}")
    client.post("/api/v1/patrons/lookup", json={"by": "email", "value": "hedy@example.org"})
    client.post("/api/v1/patrons", json={"name": "x", "phone": "4111111111111111"})
    import structlog

    structlog.get_logger().info("probe", password="hunter2", api_token=token)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    requests = [e for e in events if e["event"] == "request"]
    assert len(requests) == 4 and all(e.get("request_id") for e in requests)
    everything = "\n".join(lines)
    for secret in (token, "hunter2", "Hedy", "hedy@example.org", "4111111111111111"):
        assert secret not in everything


def test_a_logged_traceback_carries_no_local_variables(capsys, json_logs):
    import structlog

    def failing(patron_name: str) -> None:
        card = "4111111111111111"  # a local, as a record or a key would be in a real frame
        raise RuntimeError(f"failed for {len(patron_name) + len(card)} characters")

    try:
        failing("Hedy Lamarr")
    except RuntimeError:
        structlog.get_logger().exception("probe_failed")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (logged,) = [json.loads(line) for line in lines if '"probe_failed"' in line]
    frames = logged["exception"][0]["frames"]
    assert [f["name"] for f in frames][-1] == "failing"  # the traceback is there, as data
    assert all("locals" not in f or not f["locals"] for f in frames)
    assert "Hedy" not in lines[-1] and "4111111111111111" not in "\n".join(lines)


def test_an_unexpected_error_is_a_problem_with_an_instance_id(app, tenant, client_for, monkeypatch):
    from bookwarden.library import service

    monkeypatch.setattr(service, "list_page", lambda *a, **k: 1 / 0)
    response = client_for(tenant).get("/api/v1/patrons")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["instance"] == f"urn:bookwarden:request:{response.headers['x-request-id']}"
    assert "ZeroDivision" not in response.text


def test_requires_names_its_permission():
    assert requires(Permission.PATRONS_READ).required_permission is Permission.PATRONS_READ


def test_unknown_routes_are_problems(app):
    response = _anonymous(app).get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM


def test_platform_session_is_what_unauthenticated_code_gets(db, tenant, client_for):
    populate(client_for(tenant))
    with platform_session(db) as session:
        assert session.execute(text("SELECT count(*) FROM patrons")).scalar_one() == 0
