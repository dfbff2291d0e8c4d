"""Audit-coverage recipes of the tenancy area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session
from bookwarden.identity import links
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.helpers import acting
from tests.invariants.audit_coverage import (
    Call,
    Command,
    command,
    route,
)

# tenants (operators)

TENANTS = "/api/v1/operator/tenants"


@route("POST", TENANTS)
def _(w):
    body = {"slug": "gamma", "name": "Gamma College"}
    return Call(w.operator, "POST", TENANTS, Action.TENANT_CREATED, PLATFORM_CHAIN, json=body)


@route("GET", TENANTS)
def _(w):
    return Call(w.operator, "GET", TENANTS, Action.TENANT_LISTED, PLATFORM_CHAIN)


@route("GET", f"{TENANTS}/{{tenant_id}}")
def _(w):
    return Call(w.operator, "GET", f"{TENANTS}/{w.tenant.id}", Action.TENANT_VIEWED, PLATFORM_CHAIN)


@route("POST", f"{TENANTS}/{{tenant_id}}/suspend")
def _(w):
    url = f"{TENANTS}/{w.tenant.id}/suspend"
    return Call(w.operator, "POST", url, Action.TENANT_SUSPENDED, PLATFORM_CHAIN, json={"reason": "unpaid invoice"})


@route("POST", f"{TENANTS}/{{tenant_id}}/resume")
def _(w):
    with platform_session(w.db) as session:
        tenancy.suspend_tenant(session, acting(None, Permission.PLATFORM_TENANTS_MANAGE), w.tenant.id, "unpaid invoice")
    return Call(w.operator, "POST", f"{TENANTS}/{w.tenant.id}/resume", Action.TENANT_RESUMED, PLATFORM_CHAIN)


@command("tenant", "create")
def _(c):
    return Command(["tenant", "create", "north", "North University"], Action.TENANT_CREATED, PLATFORM_CHAIN)


@command("tenant", "list")
def _(c):
    c.tenant()
    return Command(["tenant", "list"], Action.TENANT_LISTED, PLATFORM_CHAIN)


@command("tenant", "suspend")
def _(c):
    c.tenant()
    return Command(
        ["tenant", "suspend", "north", "--reason", "contract ended"], Action.TENANT_SUSPENDED, PLATFORM_CHAIN
    )


@command("tenant", "resume")
def _(c):
    c.tenant()
    c.run("tenant", "suspend", "north", "--reason", "contract ended")
    return Command(["tenant", "resume", "north"], Action.TENANT_RESUMED, PLATFORM_CHAIN)


@command("tenant", "admin-enrolment")
def _(c):
    from tests.tenancy.test_first_administrator import ADDRESS, PASSWORD, invitation

    c.run("tenant", "create", "north", "North University", "--admin-email", ADDRESS)
    tenant_id = tenancy_id(c.db, "north")
    links.accept_invitation(c.db, invitation(c.db, tenant_id), PASSWORD)
    return Command(["tenant", "admin-enrolment", "north"], Action.MFA_ENROLMENT_LINK_SENT, tenant_id)


def tenancy_id(db, slug: str):
    with platform_session(db) as session:
        return tenancy.get_tenant(session, slug).id
