"""Audit-coverage recipes of the crypto area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.config import Settings
from bookwarden.db import provision
from tests.conftest import TEST_DATABASE
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.invariants.audit_coverage import (
    Command,
    command,
)


@command("keys", "rotate-tenant")
def _(c):
    return Command(["keys", "rotate-tenant", "north"], Action.KEY_ROTATED, c.tenant())


@command("keys", "rotate-master")
def _(c):
    from bookwarden.crypto.master import MasterKeys, key_file, load_master_keys, write_key_file

    # Key-file mode (a key from the environment is rotated in the secret store, not here), with the
    # tests' own key; afterwards every role password and tenant key goes back to it.
    original = c.db.keyring.master
    c.monkeypatch.delenv("BOOKWARDEN_MASTER_KEY")
    settings = Settings(home=c.home, master_key=None)
    write_key_file(key_file(settings), original.current)

    def restore() -> None:
        provision.provision(c.admin_url, TEST_DATABASE, original.current)
        rotated = load_master_keys(settings)
        c.db.keyring.rewrap_under_master(MasterKeys(original.current_id, {**rotated.keys, **original.keys}))
        c.db.keyring.master = original

    c.later(restore)
    return Command(["keys", "rotate-master"], Action.KEY_ROTATED, PLATFORM_CHAIN)
