"""Every operation of the OpenAPI document, called by a stranger (no credentials, made-up ids and
slugs), answers with the security headers whatever its status: nosniff, no framing, no referrer,
no-store, HSTS over https, a Content-Security-Policy with no inline script. And every operation that
takes a JSON body refuses one that names a key twice, before anything else looks at it.

Operations added later fall under both tests by being in the document."""

from __future__ import annotations

import json
import random
import re
import uuid

import pytest
from fastapi.testclient import TestClient

from bookwarden.api import bodies
from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.identity import passwords
from tests.helpers import fresh_address, security_header_faults

PUBLIC = "https://library.example"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def app(db, home, monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)  # sign-in attempts check a dummy hash
    return create_app(db, Settings(home=home, public_url=PUBLIC))


def _operations(app) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _url(path: str, operation: dict) -> str:
    schemas = {p["name"]: p.get("schema", {}) for p in operation.get("parameters", []) if p["in"] == "path"}

    def made_up(match: re.Match) -> str:
        schema = schemas.get(match.group(1), {})
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        if schema.get("type") == "integer":
            return str(random.randint(1, 10**6))
        return f"probe-{uuid.uuid4().hex[:8]}"

    return re.sub(r"\{([^}]+)\}", made_up, path)


def _some_body(operation: dict) -> dict:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        return {"json": {}}
    if content:
        return {"content": b"", "headers": {"Content-Type": next(iter(content))}}
    return {}


def _stranger(app) -> TestClient:
    return TestClient(app, base_url=PUBLIC, client=(fresh_address(), 50000), raise_server_exceptions=False)


def test_every_operation_answers_a_stranger_with_the_security_headers(app, db):
    operations = _operations(app)
    assert len(operations) > 150, "the whole API should be under test"
    faults, statuses = [], {}
    for method, path, operation in operations:
        # Each call undone before the next: refusals are audited, and one long transaction slows every append.
        savepoint = db.bind.begin_nested()
        try:
            response = _stranger(app).request(method, _url(path, operation), **_some_body(operation))
        finally:
            savepoint.rollback()
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        faults += security_header_faults(response, https=True)
    assert faults == [], "\n".join(faults)
    assert {401, 404, 422} <= set(statuses), statuses  # strangers were refused in the usual ways


def test_every_json_body_naming_a_key_twice_is_refused_before_anything_else(app, db):
    taking_json = [
        (method, path, operation)
        for method, path, operation in _operations(app)
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert len(taking_json) > 50
    accepted = []
    for method, path, operation in taking_json:
        savepoint = db.bind.begin_nested()
        try:
            response = _stranger(app).request(
                method,
                _url(path, operation),
                content=b'{"probe": 1, "probe": 2}',
                headers={"Content-Type": "application/json"},
            )
        finally:
            savepoint.rollback()
        if response.status_code != 422 or response.json().get("errors") != [
            {"field": "probe", "message": "duplicate key"}
        ]:
            accepted.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
    assert accepted == [], "\n".join(accepted)


def _routes(routes):
    for route in routes:
        if hasattr(route, "original_router"):  # an included router
            yield from _routes(route.original_router.routes)
        else:
            yield route


CARD = "4111 1111 1111 1111"  # a test card number: passes Luhn, Visa's prefix


@pytest.mark.parametrize(
    "body, field",
    [
        ({"note": f"pay with {CARD}"}, "note"),
        ({"items": [{"text": "ok"}, {"text": CARD.replace(" ", "")}]}, "items.1.text"),
        ({CARD: "as a key"}, "(a key)"),
        ({"number": 4111111111111111}, "number"),
    ],
    ids=["string", "nested", "key", "integer"],
)
def test_every_json_body_holding_payment_data_is_refused_before_anything_else(app, db, body, field):
    """Role descriptions, display names, disclosure purposes, tenant names...: whatever the field, a
    card or bank number in any JSON body is refused in one place, naming the field, never echoing it."""
    # Machine-made documents (a certificate handed back to be checked, a WebAuthn credential) keep their
    # own content; each route that declares one is named here, on purpose.
    machine_made = {
        (method, route.path): bodies.machine_made_fields(route)
        for route in _routes(app.routes)
        if bodies.machine_made_fields(route)
        for method in getattr(route, "methods", ())
    }
    assert machine_made == {
        ("POST", "/api/v1/privacy/erasure-certificates/verify"): {"statement"},
        ("POST", "/api/v1/auth/me/mfa/webauthn/credentials"): {"credential"},
        ("POST", "/api/v1/auth/mfa/webauthn"): {"credential"},
    }
    taking_json = [
        (method, path, operation)
        for method, path, operation in _operations(app)
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    accepted = []
    for method, path, operation in taking_json:
        savepoint = db.bind.begin_nested()
        try:
            response = _stranger(app).request(method, _url(path, operation), json=body)
        finally:
            savepoint.rollback()
        problem = response.json() if response.headers.get("content-type", "").endswith("json") else {}
        if (
            response.status_code != 422
            or problem.get("type") != "urn:bookwarden:problem:sensitive-data-refused"
            or problem.get("errors", [{}])[0].get("field") != field[:64]
            or "4111" in problem.get("detail", "")
        ):
            accepted.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
    assert accepted == [], "\n".join(accepted)


def test_machine_made_fields_keep_their_content_and_every_other_field_is_screened():
    from bookwarden.api.bodies import _screen
    from bookwarden.api.problems import ProblemException

    certificate = {"statement": {"rows": 4111111111111111, "note": CARD}, "signature": "x", "key_id": "k"}
    _screen(json.dumps(certificate).encode(), machine_made=frozenset({"statement"}))  # not refused
    with pytest.raises(ProblemException) as refused:
        _screen(json.dumps({**certificate, "key_id": CARD}).encode(), machine_made=frozenset({"statement"}))
    assert refused.value.errors[0].field == "key_id"
    with pytest.raises(ProblemException):
        _screen(json.dumps(certificate).encode())  # undeclared: screened like any body
