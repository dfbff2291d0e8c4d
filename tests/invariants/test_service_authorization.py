"""Services decide, not only routes: with every route's permission check switched off, each operation
is still refused by the service it calls.

The route's `requires(Permission.X)` refuses early and names the permission in the OpenAPI document;
the service's `authorize(actor, Permission.X)` is what holds when another adapter (a command, a page,
a job) reaches the same use case. This test removes the first and proves the second, for every
operation of the permission table: the caller holds every permission of its kind but the one the
operation needs, and sends valid requests (generated from the OpenAPI document). None may succeed,
and each operation must answer at least one of them with 403 (a request can still be refused as
invalid before any service runs, which proves nothing, hence "at least one").
"""

from __future__ import annotations

from datetime import timedelta

import schemathesis
from hypothesis import HealthCheck, given, settings

from bookwarden.api import deps
from bookwarden.core.permissions import PLATFORM_PERMISSIONS, TENANT_PERMISSIONS
from bookwarden.db.session import platform_session
from bookwarden.identity.tokens import service as tokens
from tests.invariants.test_openapi_fuzz import EXAMPLES_PER_OPERATION  # noqa: F401 - the formats it registers
from tests.invariants.test_permission_table import EXPECTED

EXAMPLES = 6
# Operations whose permission depends on the record, so the service reads it first: each has its own
# test calling the service directly with a caller lacking the permission.
DECIDED_AFTER_READING = {
    # An approval is decided by the permission of its own kind (tests/access/test_approvals_people.py and each
    # kind's tests: a holder of the queue's accounts.read alone decides nothing).
    ("POST", "/api/v1/approvals/{record_id}/approve"),
    ("POST", "/api/v1/approvals/{record_id}/reject"),
    # The operator who asked may end their own grant; anyone else needs the permission
    # (tests/access/test_grants.py::test_only_the_asker_or_a_holder_of_the_permission_ends_a_grant).
    ("POST", "/api/v1/operator-grants/{record_id}/revoke"),
}


def test_every_service_refuses_a_caller_without_the_permission(db, app, tenant, issue_token, monkeypatch):
    monkeypatch.setattr(deps, "authorize", lambda principal, permission: None)  # the routes' check, off
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        permission = EXPECTED.get((operation.method.upper(), operation.path))
        if permission is None or (operation.method.upper(), operation.path) in DECIDED_AFTER_READING:
            continue
        savepoint = db.bind.begin_nested()
        try:
            token = _without(db, tenant, issue_token, permission)
            statuses = _statuses(operation, {"Authorization": f"Bearer {token}"})
        finally:
            savepoint.rollback()
        if any(status < 400 for status in statuses) or 403 not in statuses:
            failures.append(f"{operation.method.upper()} {operation.path} ({permission}): {sorted(statuses)}")
    assert failures == [], "\n".join(failures)


def _without(db, tenant, issue_token, permission) -> str:
    """A token holding every permission of its kind except `permission`."""
    if permission in PLATFORM_PERMISSIONS:
        held = sorted((tokens.OPERATOR_TOKEN_PERMISSIONS & PLATFORM_PERMISSIONS) - {permission})
        with platform_session(db) as session:
            return tokens.issue_operator_token(session, "almost", held, timedelta(hours=1))[1]
    return issue_token(tenant, permissions=TENANT_PERMISSIONS - {permission})


def _statuses(operation, headers: dict) -> set[int]:
    seen: set[int] = set()

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        seen.add(case.call(headers=headers).status_code)

    run()
    return seen
