"""The manifest: adding an area is one line in bookwarden/areas.py plus the area's own folder.

A throwaway area, written to disk here, brings a route, a command and a job; once its name is in the
manifest, the app serves the route, the console offers the command and the worker knows the job.
The registries lower layers own refuse to work while nothing has filled them (fail closed).
"""

from __future__ import annotations

import textwrap
import uuid

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bookwarden import areas, cli
from bookwarden.access.approvals import kinds
from bookwarden.access.approvals.models import SensitiveAction
from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.core.errors import InvalidInput
from bookwarden.jobs.service import handler_for
from bookwarden.library import guards
from bookwarden.notify import policies

THROWAWAY = {
    "__init__.py": '"""A throwaway area for the manifest test."""\n',
    "routes.py": """
        from fastapi import APIRouter

        router = APIRouter(prefix="/api/v1/throwaway", tags=["throwaway"])


        @router.get("/ping")
        def ping() -> dict:
            return {"pong": True}
    """,
    "cli.py": """
        import typer

        from bookwarden.core.permissions import Permission
        from bookwarden.console import command

        throwaway = typer.Typer(name="throwaway", help="A throwaway area's commands.")
        groups = (throwaway,)


        @command(throwaway, "hello", Permission.PLATFORM_SERVICES_RUN)
        def hello() -> None:
            '''Say hello.'''
    """,
    "jobs.py": """
        from bookwarden.jobs.service import handler

        KIND = "throwaway.tick"


        @handler(KIND)
        def tick(db, payload) -> None:
            pass


        def declare_schedules(db) -> None:
            pass
    """,
}


@pytest.fixture
def throwaway_area(tmp_path, monkeypatch):
    name = f"throwaway_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    for file, text in THROWAWAY.items():
        (package / file).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(areas, "AREAS", (*areas.AREAS, name))
    areas.modules.cache_clear()
    yield name
    monkeypatch.undo()
    areas.modules.cache_clear()


def test_an_area_named_in_the_manifest_brings_its_route_command_and_job(throwaway_area):
    app = create_app(None, Settings())
    assert "/api/v1/throwaway/ping" in app.openapi()["paths"]
    assert TestClient(app).get("/api/v1/throwaway/ping").json() == {"pong": True}

    root = cli.root()
    listed = CliRunner().invoke(root, ["throwaway", "--help"])
    assert listed.exit_code == 0 and "hello" in listed.output

    jobs = {module.__name__: module for module in areas.modules("jobs")}
    area_jobs = jobs[f"{throwaway_area}.jobs"]
    assert handler_for(area_jobs.KIND) is area_jobs.tick
    cli.root()  # leave the console's root as it was (the command machinery names groups from it)


def test_without_the_manifest_line_the_area_brings_nothing(throwaway_area, monkeypatch):
    monkeypatch.setattr(areas, "AREAS", tuple(a for a in areas.AREAS if a != throwaway_area))
    areas.modules.cache_clear()
    app = create_app(None, Settings())
    assert not any(path.startswith("/api/v1/throwaway") for path in app.openapi()["paths"])
    assert TestClient(app).get("/api/v1/throwaway/ping").status_code == 404
    assert "throwaway" not in CliRunner().invoke(cli.root(), ["--help"]).output
    cli.root()


def test_every_sensitive_action_has_its_kind_declared_by_an_area():
    areas.load()
    assert kinds.declared() == frozenset(SensitiveAction)


def test_an_undeclared_approval_kind_is_refused(monkeypatch):
    monkeypatch.setattr(kinds, "_kinds", {})
    with pytest.raises(LookupError, match="no approval kind is declared"):
        kinds.kind_for(SensitiveAction.EXPORT_PATRONS)


def test_patron_guards_fail_closed_until_registered(monkeypatch):
    monkeypatch.setattr(guards, "_before_change", [])
    monkeypatch.setattr(guards, "_before_delete", [])
    with pytest.raises(RuntimeError, match="no patron can be changed"):
        guards.check_patron_change(None, uuid.uuid4())
    with pytest.raises(RuntimeError, match="no patron can be deleted"):
        guards.check_patron_deletion(None, uuid.uuid4())


def test_the_privacy_area_registers_both_patron_guards_and_the_mail_policy():
    areas.load()
    assert guards._before_change and guards._before_delete
    assert policies.optional_mail_policy() is not None


def test_optional_mail_fails_closed_without_a_consent_policy(monkeypatch):
    monkeypatch.setattr(policies, "_policy", [])
    with pytest.raises(InvalidInput, match="no consent policy is loaded"):
        policies.optional_mail_policy()
