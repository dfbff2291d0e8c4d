"""Payment and bank data are refused at every door, not only the library's records: the console's
text options and the files it and the API import (the JSON bodies of the API are walked in
tests/invariants/test_security_headers.py)."""

from __future__ import annotations

import inspect

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bookwarden import cli, console
from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import Permission
from bookwarden.db.session import platform_session
from bookwarden.tenancy.models import Tenant
from tests.e2e.test_cli import cli_env  # noqa: F401 - the console pointed at the test database

CARD = "4111 1111 1111 1111"


def _commands(app, prefix=()):
    for info in app.registered_commands:
        yield (*prefix, info.name), info.callback
    for group in app.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


def _text_options(callback) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(callback).parameters.items()
        if "str" in str(parameter.annotation) and "Path" not in str(parameter.annotation)
    ]


def test_every_text_option_of_every_command_is_screened():
    screened = 0
    for _path, callback in _commands(cli.app):
        for option in _text_options(callback):
            with pytest.raises(InvalidInput, match="looks like a payment card number"):
                console.refuse_payment_data({option: f"see {CARD}"})
            screened += 1
    assert screened > 40  # tenant names, reasons, slugs, filters, usernames...
    console.refuse_payment_data({"name": "North University", "reason": "unpaid invoice 2026-114"})


def test_a_command_given_a_card_number_is_refused_and_stores_nothing(cli_env, committed_db):  # noqa: F811
    result = CliRunner().invoke(cli.app, ["tenant", "create", "card-college", f"Card {CARD} College"])
    assert isinstance(result.exception, InvalidInput)  # printed by `bookwarden`'s main, exit code 2
    assert "--name looks like a payment card number" in str(result.exception)
    assert "4111" not in str(result.exception)
    with platform_session(committed_db) as session:
        assert session.scalar(select(Tenant).where(Tenant.slug == "card-college")) is None


def test_a_catalogue_holding_a_card_number_is_refused_naming_the_line(db, tenant, client_for):
    client = client_for(tenant, permissions={Permission.REPORTS_CATALOGUE_MANAGE})
    csv = f"item_id,title,publisher\nitem-1,Middlemarch,Penguin\nitem-2,{CARD},Vintage\n".encode()
    response = client.post("/api/v1/reports/catalogue", content=csv, headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text
    assert "line 3" in response.text and "payment card number" in response.text and "4111" not in response.text
