"""The HTTP layer as a browser, a scanner and a careless client meet it: security headers on every kind
of answer, no cross-origin permission, request bodies bounded by route and refused unread, JSON with a
key named twice refused, /metrics only for the scraper's token, the interactive API pages off unless
turned on (and then naming exactly what they load)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from itertools import repeat

import anyio
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import text

from bookwarden.api.app import create_app
from bookwarden.api.bodies import DEFAULT_LIMIT
from bookwarden.audit.events import PLATFORM_CHAIN
from bookwarden.core.config import Settings
from bookwarden.core.permissions import LIBRARY_READ, TENANT_PERMISSIONS
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.identity.saml.routes import MAX_SETTINGS_BYTES
from bookwarden.privacy.consent import unsubscribe
from bookwarden.privacy.consent.service import Topic
from bookwarden.privacy.reports import catalogue
from tests.helpers import fresh_address, security_header_faults

PUBLIC = "https://library.example"
PROBLEM = "application/problem+json"
CHUNK = 64 * 1024


@pytest.fixture
def https_app(db, home):
    return create_app(db, Settings(home=home, public_url=PUBLIC))


def _client(app, token: str | None = None) -> TestClient:
    client = TestClient(app, base_url=PUBLIC, client=(fresh_address(), 50000), raise_server_exceptions=False)
    if token:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


# -- security headers ----------------------------------------------------------------------------


def test_every_kind_of_answer_carries_the_security_headers(https_app, db, tenant, issue_token, monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)
    staff = _client(https_app, issue_token(tenant, permissions=TENANT_PERMISSIONS))
    reader = _client(https_app, issue_token(tenant, permissions=LIBRARY_READ))
    stranger = _client(https_app)
    patron = staff.post("/api/v1/patrons", json={"name": "Ada"})
    answers = [
        patron,
        staff.get("/api/v1/patrons"),
        staff.get(f"/api/v1/patrons/{patron.json()['id']}"),
        staff.delete(f"/api/v1/patrons/{uuid.uuid4()}"),
        staff.post("/api/v1/patrons", json={"name": 5}),  # 422
        staff.post(
            "/api/v1/patrons", content=b'{"name": "a", "name": "b"}', headers={"Content-Type": "application/json"}
        ),
        staff.post("/api/v1/patrons", content=b"x" * (DEFAULT_LIMIT + 1), headers={"Content-Type": "application/json"}),
        reader.post("/api/v1/patrons", json={"name": "Someone"}),  # 403
        stranger.get("/api/v1/patrons"),  # 401
        stranger.get("/api/v1/nothing-here"),  # 404
        stranger.delete("/healthz"),  # 405
        stranger.get("/healthz"),
        stranger.get("/openapi.json"),
        stranger.get("/metrics"),  # off: 404
        # Streamed exports: the headers are on the response's start, the rows stream after.
        staff.get("/api/v1/audit/events/export", params={"format": "csv"}),
        staff.get("/api/v1/audit/events/export", params={"format": "jsonl"}),
    ]
    guesser = _client(https_app)
    for name in ("ann", "bob", "cy", "dee", "eve"):
        body = {"institution": tenant.slug, "username": name, "password": "not the password"}
        answers.append(guesser.post("/api/v1/auth/login", json=body))
    answers.append(guesser.post("/api/v1/auth/login", json=body))  # 429

    from bookwarden.library import service

    monkeypatch.setattr(service, "list_page", lambda *a, **k: 1 / 0)
    answers.append(staff.get("/api/v1/patrons"))  # 500, rendered by Starlette's error middleware

    statuses = {a.status_code for a in answers}
    assert {200, 201, 401, 403, 404, 405, 413, 422, 429, 500} <= statuses, statuses
    assert "text/csv" in answers[14].headers["content-type"] and answers[14].text.startswith("seq,")
    faults = [fault for answer in answers for fault in security_header_faults(answer, https=True)]
    assert faults == []


def test_the_unsubscribe_pages_are_html_that_loads_only_from_this_site(https_app, db, tenant):
    token = unsubscribe.sign(db.master, tenant.id, uuid.uuid4(), Topic.NEWSLETTERS)
    client = _client(https_app)
    pages = [client.get(f"/api/v1/unsubscribe/{token}"), client.post(f"/api/v1/unsubscribe/{token}")]
    for page in pages:
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        assert security_header_faults(page, https=True) == []
    refused = client.get("/api/v1/unsubscribe/not-a-token")  # a problem, JSON: the JSON policy
    assert refused.headers["content-type"] == PROBLEM and security_header_faults(refused, https=True) == []


def test_strict_transport_security_only_when_the_public_url_is_https(db, home):
    over_http = _client(create_app(db, Settings(home=home, public_url="http://127.0.0.1:8000"))).get("/healthz")
    assert "strict-transport-security" not in over_http.headers
    assert security_header_faults(over_http, https=False) == []
    over_https = _client(create_app(db, Settings(home=home, public_url=PUBLIC))).get("/healthz")
    assert over_https.headers["strict-transport-security"] == "max-age=31536000"


# -- CORS: closed -------------------------------------------------------------------------------------


def test_another_sites_page_gets_no_cross_origin_permission(https_app, tenant, issue_token):
    client = _client(https_app)
    preflight = client.options(
        "/api/v1/patrons",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 405 and preflight.headers["content-type"] == PROBLEM
    read = _client(https_app, issue_token(tenant)).get("/api/v1/patrons", headers={"Origin": "https://evil.example"})
    assert read.status_code == 200
    for answer in (preflight, read, client.get("/openapi.json", headers={"Origin": "https://evil.example"})):
        assert not [name for name in answer.headers if name.lower().startswith("access-control-")], answer.headers


# -- request bodies: bounded by route, refused unread ------------------------------------------------


def _raw(app, method: str, path: str, headers: dict[str, str], chunks: Iterable[bytes]) -> tuple[int, dict, bytes, int]:
    """Call the ASGI app as a server would, handing it the body one chunk at a time.

    Returns the status, the headers, the body and how many bytes of the request body the app took.
    """
    source = iter(chunks)
    taken, sent = 0, []

    async def receive():
        nonlocal taken
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": (fresh_address(), 50000),
        "server": ("library.example", 443),
        "state": {},
        "extensions": {},
    }
    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body, taken


def _never_read():
    raise AssertionError("the body was read")
    yield b""  # pragma: no cover - makes this a generator


def _assert_too_large(status, headers, body, limit):
    assert status == 413 and headers["content-type"] == PROBLEM
    problem = json.loads(body)
    assert problem["type"] == "urn:bookwarden:problem:content-too-large" and str(limit) in problem["detail"]
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"


def test_a_body_over_the_default_limit_is_refused_with_413_before_it_is_read(https_app, tenant, issue_token):
    token = issue_token(tenant)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, answer_headers, body, taken = _raw(
        https_app, "POST", "/api/v1/patrons", headers | {"Content-Length": str(DEFAULT_LIMIT + 1)}, _never_read()
    )
    _assert_too_large(status, answer_headers, body, DEFAULT_LIMIT)
    assert taken == 0

    client = _client(https_app, token)
    over = client.post("/api/v1/patrons", content=b" " * (DEFAULT_LIMIT + 1), headers=headers)
    _assert_too_large(over.status_code, over.headers, over.content, DEFAULT_LIMIT)
    # At the limit exactly the body is read and judged on what it says (a name too long: 422).
    at = client.post("/api/v1/patrons", content=json.dumps({"name": "x" * (DEFAULT_LIMIT - 12)}), headers=headers)
    assert len(at.request.content) == DEFAULT_LIMIT and at.status_code == 422
    assert at.json()["type"] == "urn:bookwarden:problem:validation-error"
    assert client.get("/api/v1/patrons").json()["items"] == []


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(https_app, tenant, issue_token):
    headers = {"Authorization": f"Bearer {issue_token(tenant)}", "Content-Type": "application/json"}
    # No Content-Length and no end: the app must stop taking it once past the limit.
    status, answer_headers, body, taken = _raw(https_app, "POST", "/api/v1/patrons", headers, repeat(b" " * CHUNK))
    _assert_too_large(status, answer_headers, body, DEFAULT_LIMIT)
    assert DEFAULT_LIMIT < taken <= DEFAULT_LIMIT + CHUNK

    # Through an HTTP client that sends Transfer-Encoding: chunked.
    chunked = _client(https_app).post(
        "/api/v1/patrons", content=(b" " * CHUNK for _ in range(DEFAULT_LIMIT // CHUNK + 1)), headers=headers
    )
    assert chunked.request.headers["transfer-encoding"] == "chunked" and "content-length" not in chunked.request.headers
    _assert_too_large(chunked.status_code, chunked.headers, chunked.content, DEFAULT_LIMIT)


def test_the_catalogue_upload_takes_files_up_to_its_own_limit(https_app, tenant, issue_token):
    assert catalogue.MAX_BYTES > DEFAULT_LIMIT
    headers = {
        "Authorization": f"Bearer {issue_token(tenant, permissions=TENANT_PERMISSIONS)}",
        "Content-Type": "text/csv",
    }
    path = "/api/v1/reports/catalogue"
    over = headers | {"Content-Length": str(catalogue.MAX_BYTES + 1)}
    status, answer_headers, body, taken = _raw(https_app, "POST", path, over, _never_read())
    _assert_too_large(status, answer_headers, body, catalogue.MAX_BYTES)
    assert taken == 0

    status, answer_headers, body, taken = _raw(https_app, "POST", path, headers, repeat(b"x" * CHUNK))
    _assert_too_large(status, answer_headers, body, catalogue.MAX_BYTES)
    assert catalogue.MAX_BYTES < taken <= catalogue.MAX_BYTES + CHUNK

    # Past the default limit, well within its own: read, and judged by the catalogue's own checks.
    file = b"item,name,who\n" + b"i,t,p\n" * (2 * DEFAULT_LIMIT // 6)
    judged = _client(https_app).post(path, content=file, headers=headers)
    assert judged.status_code == 422 and judged.json()["type"] == "urn:bookwarden:problem:invalid-input"


def test_the_saml_settings_take_metadata_up_to_their_own_limit(https_app, tenant, issue_token):
    assert MAX_SETTINGS_BYTES > DEFAULT_LIMIT
    headers = {"Authorization": f"Bearer {issue_token(tenant, permissions=TENANT_PERMISSIONS)}"}
    over = headers | {"Content-Type": "application/json", "Content-Length": str(MAX_SETTINGS_BYTES + 1)}
    status, answer_headers, body, taken = _raw(https_app, "PUT", "/api/v1/sso/saml", over, _never_read())
    _assert_too_large(status, answer_headers, body, MAX_SETTINGS_BYTES)
    assert taken == 0

    # Metadata one character too long, every character escaped: about 3 MB, read and refused for its length.
    settings = json.dumps({"idp_metadata": "é" * 512_001})
    assert DEFAULT_LIMIT < len(settings) < MAX_SETTINGS_BYTES
    judged = _client(https_app).put(
        "/api/v1/sso/saml", content=settings, headers=headers | {"Content-Type": "application/json"}
    )
    assert judged.status_code == 422 and judged.json()["errors"][0]["field"] == "idp_metadata"


# -- JSON: each key once ------------------------------------------------------------------------------


def test_a_json_object_naming_a_key_twice_is_refused_and_nothing_is_stored(https_app, tenant, issue_token):
    client = _client(https_app, issue_token(tenant, permissions=TENANT_PERMISSIONS))
    twice = b'{"name": "Ada Lovelace", "email": "ada@example.org", "name": "Someone Else"}'
    for content_type in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
        refused = client.post("/api/v1/patrons", content=twice, headers={"Content-Type": content_type})
        assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM, content_type
        problem = refused.json()
        assert problem["type"] == "urn:bookwarden:problem:validation-error"
        assert problem["errors"] == [{"field": "name", "message": "duplicate key"}]
        assert "Ada" not in refused.text and "Someone" not in refused.text  # values are never echoed
    assert client.get("/api/v1/patrons").json()["items"] == []

    nested = {"idp_metadata": "<x/>", "role_mappings": [{"attribute": "a", "value": "v", "role": "patron"}]}
    body = json.dumps(nested).replace('"role": "patron"', '"role": "patron", "role": "tenant_admin"')
    refused = client.put("/api/v1/sso/saml", content=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "role_mappings.0.role", "message": "duplicate key"}]

    # The same key in two objects is no duplicate; bodies that are not JSON are left to the route.
    fine = client.post("/api/v1/patrons", json={"name": "Ada"})
    assert fine.status_code == 201
    assert (
        client.post("/api/v1/patrons", content=b"{not json", headers={"Content-Type": "application/json"}).json()[
            "type"
        ]
        == "urn:bookwarden:problem:validation-error"
    )


# -- /metrics: the scraper's token only -----------------------------------------------------------


SCRAPER_TOKEN = "prometheus-" + "k" * 40


def test_metrics_are_off_without_a_token_setting(https_app):
    refused = _client(https_app).get("/metrics")
    assert refused.status_code == 404 and refused.headers["content-type"] == PROBLEM


def test_metrics_answer_only_the_configured_token(db, home):
    app = create_app(db, Settings(home=home, public_url=PUBLIC, metrics_token=SCRAPER_TOKEN))
    client = _client(app)
    for authorization in (None, f"Bearer {SCRAPER_TOKEN[:-1]}x", f"Basic {SCRAPER_TOKEN}", "Bearer", SCRAPER_TOKEN):
        refused = client.get("/metrics", headers={"Authorization": authorization} if authorization else {})
        assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM, authorization
        assert "bookwarden_http_requests" not in refused.text
    with tenant_session(db, PLATFORM_CHAIN) as session:  # each refusal is in the platform's trail
        refusals = session.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'auth.rejected' AND details->>'route' = '/metrics'")
        ).scalar_one()
    assert refusals == 5
    scraped = client.get("/metrics", headers={"Authorization": f"bearer {SCRAPER_TOKEN}"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    assert 'bookwarden_http_requests_total{method="GET",route="/metrics",status="401"}' in scraped.text
    assert security_header_faults(scraped, https=True) == []


def test_a_short_metrics_token_stops_the_start_without_showing_it():
    with pytest.raises(ValidationError) as refused:
        Settings(metrics_token="guessable-token")
    assert "32 characters" in str(refused.value) and "guessable-token" not in str(refused.value)


# -- the interactive API pages ---------------------------------------------------------------------


def test_the_interactive_api_pages_are_off_by_default_and_the_document_is_served(https_app):
    client = _client(https_app)
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404, path
    document = client.get("/openapi.json")
    assert document.status_code == 200 and document.json()["info"]["title"] == "Bookwarden"


def _directives(policy: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_turned_on_each_page_may_run_exactly_the_scripts_it_names(db, home, path):
    import base64
    import hashlib

    app = create_app(db, Settings(home=home, public_url=PUBLIC, api_docs=True))
    page = _client(app).get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = _directives(page.headers["content-security-policy"])
    files = re.findall(r'<script src="([^"]+)"', page.text)
    inline = [
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in re.findall(r"<script>(.*?)</script>", page.text, re.S)
    ]
    assert files and sorted(policy["script-src"]) == sorted(files + inline)
    assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert _client(app).get("/docs/oauth2-redirect").status_code == 404  # no OAuth2 flow to finish
