"""The pages' foundation: security headers, CSRF on every form, errors as pages, sign-in redirects."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from bookwarden import areas
from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.identity import passwords
from bookwarden.web import errors
from bookwarden.web.routing import PageRoute
from tests.e2e.people import PASSWORD, staff
from tests.helpers import fresh_address, security_header_faults
from tests.invariants.test_security_headers import _routes

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def https_app(db, home):
    return create_app(db, Settings(home=home, public_url="https://library.example"))


def _visitor(app, base_url="https://library.example") -> TestClient:
    return TestClient(app, base_url=base_url, client=(fresh_address(), 50000), raise_server_exceptions=False)


def _token(response) -> str:
    return TOKEN.search(response.text).group(1)


def _page_routes(app):
    return [route for route in _routes(app.routes) if isinstance(route, PageRoute)]


def test_every_page_route_comes_from_a_pages_module_and_the_api_has_none(https_app):
    pages = _page_routes(https_app)
    assert {"/", "/signin"} <= {route.path for route in pages}
    assert all(route.endpoint.__module__.endswith(".pages") for route in pages)
    # Every `pages` module's routes are PageRoutes, so none escapes the CSRF check.
    for module in areas.modules("pages"):
        assert all(isinstance(route, PageRoute) for route in module.router.routes), module.__name__


def test_pages_carry_a_strict_policy_and_the_usual_headers(https_app):
    visitor = _visitor(https_app)
    answers = [visitor.get("/"), visitor.get("/signin"), visitor.get("/static/htmx.min.js")]
    answers.append(visitor.get("/no-such-page", headers={"Accept": "text/html"}))
    for answer in answers:
        assert security_header_faults(answer, https=True) == []
        assert "camera=()" in answer.headers["permissions-policy"]
    page = answers[1]
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in page.text and " style=" not in page.text
    assert answers[3].status_code == 404 and answers[3].headers["content-type"].startswith("text/html")


def test_htmx_is_served_from_this_site(https_app):
    answer = _visitor(https_app).get("/static/htmx.min.js")
    assert answer.status_code == 200 and "htmx" in answer.text[:200]
    assert '<script src="/static/htmx.min.js"' in _visitor(https_app).get("/").text


def test_the_csrf_cookie_is_httponly_strict_and_secure_over_https(https_app):
    answer = _visitor(https_app).get("/signin")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("bw_csrf=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie


@pytest.mark.parametrize("sent", [None, "", "forged-token", "wrong-cookie"])
def test_a_form_without_the_right_token_is_refused_and_changes_nothing(https_app, db, tenant, sent):
    staff(db, tenant.id, "nadia")
    visitor = _visitor(https_app)
    token = _token(visitor.get("/signin"))
    fields = {"institution": tenant.slug, "username": "nadia", "password": PASSWORD}
    if sent == "wrong-cookie":
        # A token copied from another browser is worth nothing with this browser's cookie.
        fields["csrf_token"] = _token(_visitor(https_app).get("/signin"))
    elif sent is not None:
        fields["csrf_token"] = sent
    answer = visitor.post("/signin", data=fields)
    assert answer.status_code == 403, answer.text
    assert "not sent from a page of this site" in answer.text and answer.headers["content-type"].startswith("text/html")
    assert "bw_session" not in visitor.cookies  # nobody was signed in

    fields["csrf_token"] = token
    answer = visitor.post("/signin", data=fields, follow_redirects=False)
    assert answer.status_code == 303 and visitor.cookies.get("bw_session")


def test_a_token_from_before_a_sign_in_is_worth_nothing_after_it(https_app, db, tenant):
    staff(db, tenant.id, "omar")
    visitor = _visitor(https_app)
    before = _token(visitor.get("/signin"))
    fields = {"institution": tenant.slug, "username": "omar", "password": PASSWORD, "csrf_token": before}
    assert visitor.post("/signin", data=fields, follow_redirects=False).status_code == 303
    # Signing out with the sign-in page's token: the session cookie changed since, so the token did too.
    assert visitor.post("/signout", data={"csrf_token": before}).status_code == 403
    after = _token(visitor.get("/"))
    assert visitor.post("/signout", data={"csrf_token": after}, follow_redirects=False).status_code == 303


def test_a_form_must_be_url_encoded_and_the_token_may_come_as_a_header(https_app):
    visitor = _visitor(https_app)
    token = _token(visitor.get("/signin"))
    as_json = visitor.post("/signin", json={"csrf_token": token}, headers={"X-CSRF-Token": token})
    assert as_json.status_code == 422
    by_header = visitor.post("/signin", data={"institution": "x"}, headers={"X-CSRF-Token": token})
    assert by_header.status_code == 422 and "Type your institution" in by_header.text


def test_payment_data_in_a_form_is_refused_before_the_page_runs(https_app):
    visitor = _visitor(https_app)
    token = _token(visitor.get("/signin"))
    answer = visitor.post(
        "/signin", data={"csrf_token": token, "institution": "x", "username": "4111 1111 1111 1111", "password": "p"}
    )
    assert answer.status_code == 422 and "payment and bank data are never stored" in answer.text
    assert "4111" not in answer.text


def test_refused_sign_in_shows_the_services_answer_on_the_form(https_app, tenant):
    visitor = _visitor(https_app)
    token = _token(visitor.get("/signin"))
    fields = {"csrf_token": token, "institution": tenant.slug, "username": "nobody", "password": "wrong"}
    answer = visitor.post("/signin", data=fields)
    assert answer.status_code == 401
    assert "The institution, username or password is not right" in answer.text
    assert 'value="nobody"' in answer.text and "wrong" not in answer.text.split("<main")[1]  # no password echoed


def test_a_reader_who_is_not_signed_in_is_sent_to_sign_in_and_back(https_app):
    answer = _visitor(https_app).get("/signin/done", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/portal/requests", "/portal/requests"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("portal", "/"),
        (None, "/"),
    ],
)
def test_next_stays_on_this_site(given, kept):
    assert errors.local_path(given) == kept


def test_an_operator_page_sends_to_the_operators_sign_in():
    assert errors.sign_in_path("/operator/grants").startswith("/operator/signin?next=/operator/grants")
    assert errors.sign_in_path("/portal").startswith("/signin?next=/portal")


def test_every_page_answers_a_stranger_with_the_security_headers(https_app, tenant):
    visitor = _visitor(https_app)
    paths = {
        route.path.replace("{tenant_slug}", tenant.slug)
        for route in _page_routes(https_app)
        if "GET" in route.methods and "{" not in route.path.replace("{tenant_slug}", "")
    }
    faults = []
    for path in sorted(paths):
        answer = visitor.get(path, follow_redirects=False)
        assert answer.status_code < 500, (path, answer.status_code)
        faults += security_header_faults(answer, https=True)
        if answer.headers.get("content-type", "").startswith("text/html"):
            assert "script-src 'self';" in answer.headers["content-security-policy"], path
    assert faults == [], "\n".join(faults)


def test_single_sign_on_goes_to_the_institutions_saml_sign_in(https_app, tenant):
    visitor = _visitor(https_app)
    answer = visitor.get(f"/signin/sso?institution={tenant.slug}", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/api/v1/sso/saml/{tenant.slug}/login?next=/signin/done"
    assert visitor.get("/signin/sso?institution=../../etc", follow_redirects=False).status_code == 422
