"""The API's shape does not depend on how the code is laid out.

Areas' routers are included in the manifest's order; that order can change which route answers a
URL only where two routes could both match it. None can: every URL has at most one route per
method, so moving an area or a sub-area in the manifest changes nothing a caller sees. Schema
names in the OpenAPI document are the models' own names, never a module path (FastAPI falls back to
`package__module__Model` when two models share a name, which would change with every move).
"""

from __future__ import annotations

import itertools

from bookwarden.api.app import create_app
from bookwarden.core.config import Settings

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _document() -> dict:
    return create_app(None, Settings()).openapi()


def _could_match_the_same_url(a: str, b: str) -> bool:
    left, right = a.strip("/").split("/"), b.strip("/").split("/")
    if len(left) != len(right):
        return False
    return all(x == y or x.startswith("{") or y.startswith("{") for x, y in zip(left, right, strict=True))


def test_no_two_routes_answer_the_same_url():
    operations = [
        (method, path) for path, item in _document()["paths"].items() for method in item if method in METHODS
    ]
    assert len(operations) > 150
    clashes = [
        (a, b)
        for (m1, a), (m2, b) in itertools.combinations(operations, 2)
        if m1 == m2 and _could_match_the_same_url(a, b)
    ]
    assert clashes == []


def test_the_overlap_check_sees_a_clash():
    assert _could_match_the_same_url("/api/v1/accounts/{account_id}", "/api/v1/accounts/me")
    assert not _could_match_the_same_url("/api/v1/accounts/{account_id}", "/api/v1/accounts/{account_id}/roles")


def test_schema_names_carry_no_module_path():
    names = set(_document()["components"]["schemas"])
    assert names and not [name for name in names if "__" in name or name.startswith("bookwarden")]
