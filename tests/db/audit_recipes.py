"""Audit-coverage recipes of the db area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.invariants.audit_coverage import (
    Command,
    command,
)


@command("db", "url")
def _(c):
    return Command(["db", "url"], Action.DATABASE_URL_SHOWN, PLATFORM_CHAIN)


@command("db", "migrate")
def _(c):
    return Command(["db", "migrate"], Action.DATABASE_MIGRATED, PLATFORM_CHAIN)


@command("db", "stop")
def _(c):
    # The embedded server under BOOKWARDEN_HOME is not running (the tests' server lives elsewhere).
    return Command(["db", "stop"], Action.DATABASE_STOPPED, PLATFORM_CHAIN)


@command("db", "distribution-plan")
def _(c):
    # Reads the catalog only (no personal data): the console's own record of the command is its trace.
    return Command(["db", "distribution-plan"], Action.CONSOLE_COMMAND, PLATFORM_CHAIN)
