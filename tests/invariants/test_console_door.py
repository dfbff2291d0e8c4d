"""One door for operators, console included: the console acts as a named operator account, and reaches an
institution's data only through an approved grant, checked by the function HTTP uses (console.py).

Walked as an attacker would: no grant, another institution's grant, another operator's, an expired one, one
of the wrong scope, an unmapped or disabled OS user, and the two commands of issue 12 that used to open
everything (`privacy export` without a grant, `token create --tenant T --role tenant_admin`).
"""

from __future__ import annotations

import inspect
import uuid

import pytest
from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.access.grants.models import GrantScope
from bookwarden.audit.events import PLATFORM_CHAIN, Action
from bookwarden.core.config import get_settings
from bookwarden.core.errors import Forbidden
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.operators import service as operator_accounts
from bookwarden.identity.tokens import service as tokens
from bookwarden.library import records as library
from tests.e2e.test_cli import cli_env, console_grant, enrolled_operator, granted  # noqa: F401 - fixture
from tests.helpers import acting
from tests.invariants.audit_coverage import COMMAND_RECIPES, Console
from tests.invariants.test_audit_coverage import _commands, _load_recipes

_load_recipes()


def _needs_grant(callback) -> bool:
    permission = getattr(callback, "required_permission", None)
    return permission is not None and not permission.is_platform


ON_TENANT_DATA = sorted(path for path, callback in _commands(cli.app) if _needs_grant(callback))


@pytest.fixture
def console(cli_env, committed_db, admin_url, monkeypatch, home):  # noqa: F811 - the fixture imported above
    runner = Console(committed_db, admin_url, monkeypatch, home)
    yield runner
    for undo in reversed(runner.undo):
        undo()


def _invoke(*args: str):
    """As given: no grant is added (Console.run would add one)."""
    return CliRunner().invoke(cli.app, list(args))


def _refused(result, words: str) -> None:
    assert isinstance(result.exception, Forbidden), (result.exception, result.output)
    assert words in str(result.exception), str(result.exception)


def _patron(console: Console, slug: str):
    """A new institution `slug` with one patron: (institution id, patron id)."""
    tenant_id = console.tenant(slug)
    with tenant_session(console.db, tenant_id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Ada Lovelace"))
    return tenant_id, patron.id


def _package_built(console: Console, tenant_id) -> bool:
    return any(e.action == Action.SUBJECT_EXPORT_BUILT for e in console.since({}) if e.chain == tenant_id)


def test_every_command_on_an_institutions_data_takes_tenant_and_grant():
    assert len(ON_TENANT_DATA) >= 15  # privacy, requests, certificates, retention, reports, audit search
    for path, callback in _commands(cli.app):
        if _needs_grant(callback):
            options = inspect.signature(callback).parameters
            assert {"tenant", "grant"} <= set(options), f"bookwarden {' '.join(path)} must take --tenant and --grant"


@pytest.mark.parametrize("path", [*ON_TENANT_DATA, ("audit", "export")], ids=lambda p: " ".join(p))
def test_refused_without_a_grant_and_done_with_one(console, path):
    run = COMMAND_RECIPES[path](console)
    assert "--grant" not in run.args
    before = console.heads()
    _refused(_invoke(*run.args), "--grant")
    seen = console.since(before)
    # The refusal is recorded in the platform's chain, naming the operator; nothing happened in the institution.
    (denied,) = seen
    assert (denied.chain, denied.action, denied.outcome) == (PLATFORM_CHAIN, "access.denied", "denied")
    assert (denied.actor_kind, denied.actor_id) == ("console", console.operator_id)
    assert denied.details["command"] == " ".join(path)

    args = granted(console.db, run.args)
    grant_id = uuid.UUID(args[args.index("--grant") + 1])
    before = console.heads()
    assert CliRunner().invoke(cli.app, args).exit_code == 0
    done = [e for e in console.since(before) if e.chain != PLATFORM_CHAIN]
    used = [e for e in done if e.action == Action.GRANT_USED]
    assert len(used) == 1 and used[0].grant_id == grant_id
    # Every event in the institution's chain names the person and the grant.
    assert {(e.actor_kind, e.actor_id, e.grant_id) for e in done} == {("console", console.operator_id, grant_id)}


def test_privacy_export_of_a_patron_needs_a_grant(console):
    """Issue 12: `privacy export --tenant T --patron P` decrypted a patron without a grant."""
    tenant_id, patron_id = _patron(console, "north")
    args = ["privacy", "export", "--tenant", "north", "--patron", str(patron_id)]
    _refused(_invoke(*args), "approved grant")
    assert not _package_built(console, tenant_id)

    # With a grant, outside a data-subject request, it only asks: a second person of the institution approves
    # (tests/privacy/test_subject_export_approval.py walks the rest).
    grant = console_grant(console.db, tenant_id, GrantScope.PRIVACY)
    result = _invoke(*args, "--grant", grant)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("approval request ")
    assert not _package_built(console, tenant_id)


def test_no_institution_token_is_minted_at_the_console(console):
    """Issue 12: `token create --tenant T --role tenant_admin` minted a full-rights token for up to a year."""
    tenant_id = console.tenant("north")
    result = _invoke("token", "create", "--tenant", "north", "--role", "tenant_admin", "--days", "366")
    assert result.exit_code == 2 and "No such option" in result.output
    grant = console_grant(console.db, tenant_id, GrantScope.PRIVACY)
    assert _invoke("token", "create", "--tenant", "north", "--grant", grant).exit_code == 2  # nor with a grant
    with tenant_session(console.db, tenant_id) as session:
        assert tokens.list_api_tokens(session, acting(tenant_id, Permission.TOKENS_MANAGE)) == []


def test_a_grant_for_one_institution_does_not_open_another(console):
    north, _ = _patron(console, "north")
    south, south_patron = _patron(console, "south")
    grant = console_grant(console.db, north, GrantScope.PRIVACY)
    before = console.heads()
    result = _invoke("privacy", "export", "--tenant", "south", "--patron", str(south_patron), "--grant", grant)
    _refused(result, "another institution")
    seen = console.since(before)
    assert [e.action for e in seen] == ["access.denied"]  # no use recorded in north, nothing done in south
    assert not _package_built(console, south)


def test_another_operators_grant_does_not_work(console):
    tenant_id, patron_id = _patron(console, "north")
    other = enrolled_operator(console.db, "other.ops", "operator_ops")
    grant = console_grant(console.db, tenant_id, GrantScope.PRIVACY, operator_id=other)
    result = _invoke("privacy", "export", "--tenant", "north", "--patron", str(patron_id), "--grant", grant)
    _refused(result, "no approved, current operator grant")
    assert not _package_built(console, tenant_id)


def test_an_expired_grant_does_not_work(console, superuser_conn):
    tenant_id, patron_id = _patron(console, "north")
    grant = console_grant(console.db, tenant_id, GrantScope.PRIVACY)
    # Its window passed (as time would have it: the grant's eight hours ended yesterday).
    superuser_conn.execute(
        "UPDATE operator_grants SET starts_at = now() - interval '30 hours', expires_at = now() - interval '25 hours'"
        " WHERE id = %s",
        (uuid.UUID(grant),),
    )
    result = _invoke("privacy", "export", "--tenant", "north", "--patron", str(patron_id), "--grant", grant)
    _refused(result, "no approved, current operator grant")
    assert not _package_built(console, tenant_id)


def test_a_grant_covers_only_its_scope(console):
    """A library read grant lets the operator read patrons over HTTP; it does not export one."""
    tenant_id, patron_id = _patron(console, "north")
    grant = console_grant(console.db, tenant_id, GrantScope.READ)
    result = _invoke("privacy", "export", "--tenant", "north", "--patron", str(patron_id), "--grant", grant)
    _refused(result, "privacy.requests.handle")
    audit_grant = console_grant(console.db, tenant_id, GrantScope.PRIVACY)
    _refused(_invoke("audit", "search", "--tenant", "north", "--grant", audit_grant), "audit.read")
    assert not _package_built(console, tenant_id)


def test_a_grant_that_is_not_an_id_is_refused(console):
    _, patron_id = _patron(console, "north")
    result = _invoke("privacy", "export", "--tenant", "north", "--patron", str(patron_id), "--grant", "please")
    _refused(result, "not the id of an operator grant")


def test_an_unmapped_os_user_runs_nothing_but_says_how_to_map(console, monkeypatch):
    console.tenant("north")
    monkeypatch.setenv("BOOKWARDEN_CONSOLE_OPERATORS", f"{cli.os_user()}=nobody.here")
    get_settings.cache_clear()
    before = console.heads()
    _refused(_invoke("tenant", "list"), "BOOKWARDEN_CONSOLE_OPERATORS")
    # An operator exists already: nobody unmapped creates another.
    _refused(_invoke("operator", "create", "mallory", "--role", "ciso"), "mapped to no active operator")
    denied = console.since(before)
    assert [(e.action, e.actor_kind) for e in denied] == [("access.denied", "system")] * 2
    assert all(e.details["os_user"] == cli.os_user() for e in denied)
    with platform_session(console.db) as session:
        assert operator_accounts.console_account(session, "mallory") is None


def test_a_disabled_operator_runs_nothing(console):
    with platform_session(console.db) as session:
        operator_accounts.disable(session, "console.operator-ops")
    _refused(_invoke("tenant", "list"), "disabled")
