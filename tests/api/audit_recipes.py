"""Audit-coverage recipes of the api area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.invariants.audit_coverage import (
    Command,
    command,
)


@command("serve")
def _(c):
    import uvicorn

    # The server itself does not start: its start is what is recorded, before it listens.
    c.monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    return Command(["serve", "--port", "8999"], Action.SERVICE_STARTED, PLATFORM_CHAIN)


@command("demo")
def _(c):
    return Command(["demo", "--patrons", "2"], Action.TOKEN_ISSUED, None)
