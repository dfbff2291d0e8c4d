"""Audit coverage: every route of the API and every command of the console leaves its audit event.

Both lists come from enumeration (the FastAPI app's routes, the Typer app's commands), so a route
or command added later fails here until it records its event and has a recipe below:

- ROUTE_RECIPES: (method, path) -> recipe(world) -> Call. The recipe prepares what the call needs
  (a record, an account, a signed-in browser...) through the real API or services, then names the
  call under test and the action it must record, in which chain. The test reads the events
  appended after that moment in every chain and looks for the action, succeeded, with the
  response's request id.
- COMMAND_RECIPES: command path -> recipe(console) -> Command, the same for the command line,
  run in-process against the committed test database. Every command also declares the one
  permission it needs (`@command` in cli.py), and leaves console.command with the OS user.

Only the routes in EXEMPT record nothing, each for the reason written there. Around them, focused
tests: what a patron read records, a failed sign-in on an unknown account, an operator working
under a grant, a refused request, a refused command.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import text

from bookwarden import areas, cli
from bookwarden.access.grants import service as grants
from bookwarden.api.app import create_app
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.config import Settings, get_settings
from bookwarden.core.permissions import (
    LIBRARY_READ,
    PLATFORM_PERMISSIONS,
    Permission,
)
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import passwords
from bookwarden.library import records as library
from bookwarden.tenancy import service as tenancy
from bookwarden.web.routing import PageRoute
from tests.e2e.test_cli import cli_env, map_console  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.invariants.audit_coverage import (
    COMMAND_RECIPES,
    EXEMPT,
    PASSWORD,
    QUIET_PAGES,
    ROUTE_RECIPES,
    Console,
    World,
    _found,
)
from tests.invariants.test_sharing_gate import OUTWARD_COMMANDS, OUTWARD_PAGES, OUTWARD_ROUTES, assert_gated


def _load_recipes() -> None:
    """Every area supplies its recipes in tests/<area>/audit_recipes.py, found from the manifest."""
    for area in areas.AREAS:
        name = f"tests.{area.rsplit('.', 1)[-1]}.audit_recipes"
        if (ROOT / name.replace(".", "/")).with_suffix(".py").exists():
            importlib.import_module(name)


ROOT = Path(__file__).resolve().parents[2]
_load_recipes()


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Argon2 at OWASP's floor here, as in the sign-in tests: many accounts sign in."""
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def world(request, db, app, tenant, issue_token, operator_token, browser) -> World:
    return World(request, db, app, tenant, issue_token, operator_token, browser)


# -- the route test ----------------------------------------------------------------------------


def _api_routes(routes):
    for r in routes:
        if hasattr(r, "original_router"):  # an included router
            yield from _api_routes(r.original_router.routes)
        else:
            yield r


def _route_keys() -> list[tuple[str, str]]:
    app = create_app(None, Settings(api_docs=True))  # every route there can be: the optional pages too
    keys = set()
    for r in _api_routes(app.routes):
        for method in getattr(r, "methods", None) or {"GET"}:
            if method != "HEAD" and r.path not in EXEMPT and not (method == "GET" and r.path in QUIET_PAGES):
                keys.add((method, r.path))
    return sorted(keys, key=lambda k: (k[1], k[0]))


ROUTES = _route_keys()


@pytest.mark.parametrize("method, path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_writes_its_audit_event(world, method, path):
    recipe = ROUTE_RECIPES.get((method, path))
    assert recipe is not None, (
        f"{method} {path} has no recipe: add one to ROUTE_RECIPES in tests/invariants/test_audit_coverage.py "
        "(a valid call by an authorised caller, and the audit action it must record)"
    )
    call = recipe(world)
    matched = next(r for r in _api_routes(world.app.routes) if getattr(r, "path", None) == path)
    assert matched.path_regex.match(call.url) and call.method == method, f"the recipe calls {call.method} {call.url}"
    before = world.trail.heads()
    response = call.send()
    assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
    seen = world.trail.since(before)
    event = _found(seen, call.expect, call.chain, f"{method} {path}")
    assert event.request_id == response.headers["x-request-id"], "the event names another request"
    outward = (method, path) in OUTWARD_ROUTES or (method, path) in OUTWARD_PAGES
    assert_gated(seen, f"{method} {path}", outward)  # sharing asks the gate


def test_the_exempt_routes_are_exactly_the_operational_ones():
    paths = {r.path for r in _api_routes(create_app(None, Settings(api_docs=True)).routes)}
    assert set(EXEMPT) <= paths, set(EXEMPT) - paths
    assert all(
        p in {"/healthz", "/metrics", "/openapi.json", "/static"} or p.startswith(("/docs", "/redoc")) for p in EXEMPT
    )


def test_the_quiet_pages_are_pages_read_with_get():
    read = {
        r.path
        for r in _api_routes(create_app(None, Settings()).routes)
        if isinstance(r, PageRoute) and "GET" in r.methods
    }
    assert set(QUIET_PAGES) <= read, set(QUIET_PAGES) - read


def test_every_recipe_names_a_route_that_exists():
    assert set(ROUTE_RECIPES) <= set(ROUTES), set(ROUTE_RECIPES) - set(ROUTES)


# -- focused: what the events say ------------------------------------------------------------------


def test_a_patron_read_records_who_read_which_patron_in_which_request(world):
    patron = world.records[library.PATRONS]
    token_id = UUID(world.staff.get("/api/v1/auth/me").json()["id"])
    before = world.trail.heads()
    response = world.staff.get(f"/api/v1/patrons/{patron['id']}", headers={"X-Request-ID": "read-0001-patron"})
    assert response.status_code == 200
    (event,) = world.trail.since(before)
    assert (event.chain, event.action, event.outcome) == (world.tenant.id, "patron.viewed", "succeeded")
    assert (event.actor_kind, event.actor_id, event.grant_id) == ("api_token", token_id, None)
    assert (event.target_kind, event.target_id) == ("patron", UUID(patron["id"]))
    assert (event.request_id, event.source_address) == (response.headers["x-request-id"], "testclient")
    assert event.request_id.startswith("read-0001-patron-")  # the caller's id, made unique per request
    assert patron["email"] not in json.dumps(event.details) and patron["name"] not in json.dumps(event.details)


def test_a_list_records_the_ids_it_returned_and_a_change_the_fields_not_the_values(world):
    records = world.records
    before = world.trail.heads()
    listed = world.staff.get("/api/v1/loans").json()["items"]
    assert world.staff.patch(f"/api/v1/patrons/{records[library.PATRONS]['id']}", json={"name": "Renamed"}).is_success
    listing, change = world.trail.since(before)
    assert listing.action == "loan.listed"
    assert listing.details == {"ids": [item["id"] for item in listed], "count": len(listed)}
    assert change.action == "patron.changed" and change.details == {"fields": ["name"]}


def test_a_lookup_records_the_index_and_the_ids_never_the_value(world):
    patron = world.records[library.PATRONS]
    before = world.trail.heads()
    found = world.staff.post("/api/v1/patrons/lookup", json={"by": "email", "value": patron["email"]}).json()
    (event,) = world.trail.since(before)
    assert event.action == "patron.looked_up"
    assert event.details == {"by": "email", "ids": [f["id"] for f in found], "count": 1}
    assert patron["email"] not in json.dumps(event.details)


def test_a_failed_sign_in_on_an_unknown_account_is_recorded_and_answered_like_any_other(world):
    world.account("lena")

    def attempt(username, password=PASSWORD, institution=None):
        body = {"institution": institution or world.tenant.slug, "username": username, "password": password}
        response = world.browser().post("/api/v1/auth/login", json=body)
        return response.status_code, {k: v for k, v in response.json().items() if k != "instance"}

    before = world.trail.heads()
    unknown = attempt("nobody-here")
    wrong = attempt("lena", "not the password at all")
    assert unknown == wrong and unknown[0] == 401  # nothing tells the caller which it was
    seen = world.trail.since(before)
    failures = [e for e in seen if e.action == "auth.sign_in.failed"]
    assert [(e.chain, e.outcome, e.details["reason"]) for e in failures] == [
        (world.tenant.id, "denied", "unknown account"),
        (world.tenant.id, "denied", "wrong password"),
    ]
    assert failures[0].target_id is None and "nobody-here" not in json.dumps([e.details for e in seen])

    before = world.trail.heads()
    assert attempt("nobody-here", institution="no-such-place") == unknown
    failure = next(e for e in world.trail.since(before) if e.action == "auth.sign_in.failed")
    assert (failure.chain, failure.details) == (PLATFORM_CHAIN, {"reason": "unknown institution"})


def test_an_operator_working_under_a_grant_leaves_events_carrying_the_grant(world):
    patron = world.records[library.PATRONS]
    with platform_session(world.db) as session:
        operator_id = session.execute(text("SELECT id FROM operator_tokens")).scalar_one()
    operator = Principal(PrincipalKind.OPERATOR_TOKEN, operator_id, None, PLATFORM_PERMISSIONS)
    grant = world.grant_requested(operator)
    with tenant_session(world.db, world.tenant.id) as session:
        grants.approve_grant(session, world.as_admin(), grant.id)
    before = world.trail.heads()
    headers = {"X-Operator-Grant": str(grant.id)}
    assert world.operator.get(f"/api/v1/patrons/{patron['id']}", headers=headers).status_code == 200
    assert world.operator.get("/api/v1/loans", headers=headers).status_code == 200
    seen = world.trail.since(before)
    assert [e.action for e in seen] == ["operator_grant.used", "patron.viewed", "operator_grant.used", "loan.listed"]
    assert {(e.chain, e.actor_kind, e.actor_id, e.grant_id) for e in seen} == {
        (world.tenant.id, "operator_token", operator_id, grant.id)
    }


def test_a_refused_request_records_access_denied_with_the_permission(world):
    reader = world.client(LIBRARY_READ)
    before = world.trail.heads()
    response = reader.post("/api/v1/patrons", json={"name": "Someone"}, headers={"X-Request-ID": "denied-0001"})
    assert response.status_code == 403
    (event,) = world.trail.since(before)
    assert (event.chain, event.action, event.outcome) == (world.tenant.id, "access.denied", "denied")
    assert event.details["permission"] == "patrons.write" and event.request_id == response.headers["x-request-id"]


@pytest.fixture
def console(cli_env, committed_db, admin_url, monkeypatch, home):  # noqa: F811 - the fixture imported above
    runner = Console(committed_db, admin_url, monkeypatch, home)
    yield runner
    for undo in reversed(runner.undo):
        undo()
    get_settings.cache_clear()


def _commands(typer_app, prefix: tuple[str, ...] = ()):
    """Every command but those that run with no database (cli.OFFLINE_COMMANDS, each with its reason)."""
    for info in typer_app.registered_commands:
        if (*prefix, info.name) in cli.OFFLINE_COMMANDS:
            continue
        yield (*prefix, info.name or info.callback.__name__), info.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


COMMANDS = sorted(path for path, _ in _commands(cli.app))


def test_every_command_declares_the_one_permission_it_needs():
    for path, callback in _commands(cli.app):
        declared = getattr(callback, "required_permission", None)
        assert isinstance(declared, Permission), (
            f"bookwarden {' '.join(path)} declares no permission: register it with "
            "@command(group, name, Permission.X) in cli.py"
        )
    assert len(COMMANDS) >= 13


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_writes_its_audit_event(console, path):
    recipe = COMMAND_RECIPES.get(path)
    assert recipe is not None, (
        f"bookwarden {' '.join(path)} has no recipe: add one to COMMAND_RECIPES in "
        "tests/invariants/test_audit_coverage.py (a valid run, and the audit action it must record)"
    )
    run = recipe(console)
    assert tuple(run.args[: len(path)]) == path, f"the recipe runs bookwarden {' '.join(run.args)}"
    before = console.heads()
    console.run(*run.args)
    seen = console.since(before)
    _found(seen, run.expect, run.chain, f"bookwarden {' '.join(path)}")
    assert_gated(seen, f"bookwarden {' '.join(path)}", path in OUTWARD_COMMANDS)  # sharing asks the gate
    ran = _found(seen, Action.CONSOLE_COMMAND, PLATFORM_CHAIN, f"bookwarden {' '.join(path)}")
    assert ran.details["os_user"] == cli.os_user() and ran.details["command"] == " ".join(path)
    # The person at the console: the operator account the OS user is mapped to, never an anonymous system.
    assert ran.actor_kind == "console" and ran.source_address == "console"
    assert ran.actor_id == console.operator_id


def test_every_command_recipe_names_a_command_that_exists():
    assert set(COMMAND_RECIPES) <= set(COMMANDS), set(COMMAND_RECIPES) - set(COMMANDS)


def test_a_refused_command_records_the_denial_with_the_permission_and_the_os_user(console, monkeypatch, capsys):
    dpo = map_console(monkeypatch, console.db, "dpo")  # an operator whose role does not manage tenants
    monkeypatch.setattr("sys.argv", ["bookwarden", "tenant", "create", "west", "West College"])
    before = console.heads()
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2 and "platform.tenants.manage" in capsys.readouterr().err
    (event,) = console.since(before)
    assert (event.chain, event.action, event.outcome) == (PLATFORM_CHAIN, "access.denied", "denied")
    assert (event.actor_kind, event.actor_id) == ("console", dpo)
    assert event.details == {
        "os_user": cli.os_user(),
        "command": "tenant create",
        "problem": "forbidden",
        "permission": "platform.tenants.manage",
    }
    with platform_session(console.db) as session:
        assert tenancy.list_tenants(session) == []  # and nothing was done
