"""An institution's first administrator: invited by mail at `tenant create`, never by a token printed to the
operator (issue 12, item 3)."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.access.roles.reads import held_role_permissions
from bookwarden.core.errors import Conflict, NotFound
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity import first_administrator, links
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.enrolment import links as enrolment_links
from bookwarden.identity.links import InvalidLink
from bookwarden.identity.models import AccountStatus
from bookwarden.identity.signin import service as signin
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.tenancy.service import get_tenant
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture

ADDRESS = "dana.admin@north.example"
PASSWORD = "violet tractor mango 42 harbour"


def _mails(db, tenant_id):
    with tenant_session(db, tenant_id) as session:
        return [
            open_mail(session, m) for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at))
        ]


def _link(mail) -> str:
    return re.search(r"#token=(\S+)", mail.body).group(1)


def invitation(db, tenant_id) -> str:
    """The token of the invitation mailed to the first administrator."""
    return _link(_mails(db, tenant_id)[0])


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
    token = _link(mail)
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
    from bookwarden.console import _unmapped_principal
    from bookwarden.core.permissions import Permission

    assert CliRunner().invoke(cli.app, ["tenant", "create", "north", "North", "--admin-email", ADDRESS]).exit_code == 0
    with platform_session(committed_db) as session:
        tenant_id = get_tenant(session, "north").id
    operator = _unmapped_principal(frozenset({Permission.PLATFORM_TENANTS_MANAGE}))
    with pytest.raises(Conflict, match="accounts already"), tenant_session(committed_db, tenant_id) as session:
        first_administrator.invite(session, committed_db.master, operator, "mallory@elsewhere.example")
    assert len(_mails(committed_db, tenant_id)) == 1


def test_a_bad_address_creates_nothing(cli_env, committed_db):  # noqa: F811
    """Not an institution without its administrator: the address is checked before anything is created."""
    result = CliRunner().invoke(cli.app, ["tenant", "create", "north", "North", "--admin-email", "not an address"])
    assert result.exit_code != 0 and "not an email address" in str(result.exception or result.output)
    with platform_session(committed_db) as session, pytest.raises(NotFound):
        get_tenant(session, "north")


def test_the_first_administrator_enrols_a_second_factor_through_a_mailed_link_and_signs_in(
    cli_env,  # noqa: F811
    committed_db,
):
    """An administrator's role requires a second factor: the operator has the enrolment link mailed, once the
    invitation is accepted and while the administrator is the institution's only account."""
    run = CliRunner().invoke
    assert run(cli.app, ["tenant", "create", "north", "North University", "--admin-email", ADDRESS]).exit_code == 0
    with platform_session(committed_db) as session:
        tenant_id = get_tenant(session, "north").id
    early = run(cli.app, ["tenant", "admin-enrolment", "north"])  # the invitation is not accepted yet
    assert isinstance(early.exception, Conflict)
    links.accept_invitation(committed_db, invitation(committed_db, tenant_id), PASSWORD)
    with pytest.raises(signin.SecondFactorEnrolmentRequired):
        signin.sign_in(committed_db, signin.SignInAttempt("north", ADDRESS, PASSWORD, "192.0.2.1", "test"))

    sent = run(cli.app, ["tenant", "admin-enrolment", "north"])
    assert sent.exit_code == 0, sent.output
    enrolment_mail = _mails(committed_db, tenant_id)[-1]
    assert enrolment_mail.to == ADDRESS and _link(enrolment_mail) not in sent.output
    begun = enrolment_links.begin(committed_db, _link(enrolment_mail), PASSWORD, "192.0.2.1", "test")
    enrolled = enrolment_links.confirm(committed_db, begun.session_token, pyotp.TOTP(begun.secret).now())
    assert enrolled.recovery_codes
    with pytest.raises(InvalidLink):  # the link worked once
        enrolment_links.begin(committed_db, _link(enrolment_mail), PASSWORD, "192.0.2.1", "test")
    signed = signin.sign_in(committed_db, signin.SignInAttempt("north", ADDRESS, PASSWORD, "192.0.2.2", "test"))
    assert signed.second_factor_pending  # password, then the app: an administrator like any other
