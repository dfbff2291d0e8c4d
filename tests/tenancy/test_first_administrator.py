"""An institution's first administrator: invited by mail at `tenant create`, never by a token printed to the
operator (issue 12, item 3)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.access.roles.reads import held_role_permissions
from bookwarden.core.errors import Conflict
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import first_administrator, links
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.links import InvalidLink
from bookwarden.identity.models import AccountStatus
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy.service import get_tenant
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture

ADDRESS = "dana.admin@north.example"
PASSWORD = "violet tractor mango 42 harbour"


def _mails(db, tenant_id):
    with tenant_session(db, tenant_id) as session:
        return [open_mail(session, m) for m in session.scalars(select(OutboxMessage))]


def test_tenant_create_mails_the_first_administrator_an_invitation_that_works_once(cli_env, committed_db):  # noqa: F811
    result = CliRunner().invoke(cli.app, ["tenant", "create", "north", "North University", "--admin-email", ADDRESS])
    assert result.exit_code == 0, result.output
    # Nothing secret reaches the operator: no token, no link, on stdout or stderr.
    assert "bwt_" not in result.output and "bwo_" not in result.output and "token=" not in result.output
    assert "invitation mailed" in result.output

    with platform_session(committed_db) as session:
        tenant_id = get_tenant(session, "north").id
    (mail,) = _mails(committed_db, tenant_id)
    assert mail.to == ADDRESS and "North University" in mail.subject
    token = re.search(r"#token=(\S+)", mail.body).group(1)
    assert token not in result.output

    with tenant_session(committed_db, tenant_id) as session:
        account = accounts.find_by_username(session, ADDRESS)
        assert account.status is AccountStatus.INVITED
        assert "tenant_admin" in held_role_permissions(session, account.id)

    assert links.accept_invitation(committed_db, token, PASSWORD) == account.id
    with pytest.raises(InvalidLink):  # once
        links.accept_invitation(committed_db, token, "another long pass phrase 77 orchard")
    with tenant_session(committed_db, tenant_id) as session:
        assert accounts.find_by_username(session, ADDRESS).status is AccountStatus.ACTIVE


def test_the_first_administrator_is_only_the_first(cli_env, committed_db):  # noqa: F811
    """Once an institution has an account, the operator invites nobody into it: its administrators do."""
    from bookwarden.access.permissions import Permission
    from bookwarden.console import _unmapped_principal

    assert CliRunner().invoke(cli.app, ["tenant", "create", "north", "North", "--admin-email", ADDRESS]).exit_code == 0
    with platform_session(committed_db) as session:
        tenant_id = get_tenant(session, "north").id
    operator = _unmapped_principal(frozenset({Permission.PLATFORM_TENANTS_MANAGE}))
    with pytest.raises(Conflict, match="accounts already"), tenant_session(committed_db, tenant_id) as session:
        first_administrator.invite(session, committed_db.master, operator, "mallory@elsewhere.example")
    assert len(_mails(committed_db, tenant_id)) == 1


def test_a_bad_address_creates_no_administrator(cli_env, committed_db):  # noqa: F811
    result = CliRunner().invoke(cli.app, ["tenant", "create", "north", "North", "--admin-email", "not an address"])
    assert result.exit_code != 0
    with platform_session(committed_db) as session:
        tenant_id = get_tenant(session, "north").id
    assert _mails(committed_db, tenant_id) == []
