"""Records of processing (art. 30) per institution, generated from the registry: JSON and CSV over the API,
the console command, the permission that guards them, and the audit event each export leaves."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, BuiltinRole, Permission
from bookwarden.db.session import tenant_session
from bookwarden.privacy.records.service import CSV_FIELDS, generate, security_measures
from bookwarden.privacy.registry import SUBJECT_DESCRIPTIONS, registry
from tests.e2e.test_cli import cli_env, granted  # noqa: F401 - the command line pointed at the test database

URL = "/api/v1/privacy/records-of-processing"
READER = {Permission.PRIVACY_RECORDS_READ}


def _events(session, action: str) -> list:
    return session.execute(
        text("SELECT actor_kind, target_id, details FROM audit_events WHERE action = :a ORDER BY seq"), {"a": action}
    ).all()


def test_one_activity_per_category_the_institutions_tables_hold(tenant):
    records = generate(tenant)

    expected = {c.value for name, cats in registry().categories_per_table(tenant_only=True).items() for c in cats}
    assert {a.category for a in records.activities} == expected
    loans = next(a for a in records.activities if a.category == "circulation_history")
    assert loans.locations == ("loans.item_title",)
    assert loans.data_subjects == (SUBJECT_DESCRIPTIONS["patron"],)
    assert loans.keep_days == 365 and "anonymized" in loans.retention
    assert any("publishers: anonymized counts only" in r for r in loans.recipients)
    credentials = next(a for a in records.activities if a.category == "credentials")
    assert "one-way hashed (never readable)" in credentials.protection
    assert "accounts.password_hash" in credentials.locations
    # Platform tables describe no institution's data subjects: jobs, tokens of operators, the tenants list.
    assert not any(loc.startswith(("jobs.", "operator_tokens.", "tenants.")) for a in records.activities
                   for loc in a.locations)  # fmt: skip
    assert (records.controller["role"], records.controller["name"]) == ("controller", "Alpha University")
    assert records.processor["role"] == "processor"


def test_the_api_answers_json_and_records_the_export(client_for, tenant, in_tenant):
    response = client_for(tenant, permissions=READER).get(URL)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["controller"] == {
        "role": "controller",
        "name": "Alpha University",
        "institution_id": str(tenant.id),
        "slug": "alpha",
        "contact": "the institution's privacy officers (role privacy_officer)",
    }
    assert body["security_measures"] == list(security_measures())
    assert "at most 35 days after the erasure" in body["security_measures"][-1]
    categories = {a["category"]: a for a in body["activities"]}
    assert {"identity", "contact", "circulation_history", "search_history", "complaints"} <= set(categories)
    assert "encrypted under the institution's key" in categories["complaints"]["protection"]
    for activity in body["activities"]:
        assert activity["purposes"] and activity["recipients"] and activity["retention"] and activity["locations"]
    with in_tenant(tenant) as session:
        [(actor_kind, target_id, details)] = _events(session, "privacy.records_of_processing.exported")
    assert (actor_kind, target_id, details["format"]) == ("api_token", tenant.id, "json")
    assert set(details["categories"]) == set(categories)


def test_the_api_answers_csv_one_row_per_category(client_for, tenant):
    client = client_for(tenant, permissions=READER)
    as_json = client.get(URL).json()

    response = client.get(URL, params={"format": "csv"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CSV_FIELDS
    assert [r["category"] for r in rows] == [a["category"] for a in as_json["activities"]]
    search = next(r for r in rows if r["category"] == "search_history")
    assert search["locations"] == "searches.query" and search["keep_days"] == "90"
    assert search["controller"] == "Alpha University" and search["controller_id"] == str(tenant.id)
    assert search["security_measures"] == "; ".join(security_measures())


def test_a_spreadsheet_never_runs_the_institutions_name(client_for, make_tenant):
    hostile = make_tenant("hostile", '=HYPERLINK("https://evil.example","x")')
    rows = list(csv.DictReader(io.StringIO(client_for(hostile, permissions=READER).get(URL + "?format=csv").text)))
    assert {r["controller"] for r in rows} == {'\'=HYPERLINK("https://evil.example","x")'}


@pytest.mark.parametrize(
    ("permissions", "status"),
    [
        (BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER], 200),
        (BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN], 200),
        (BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF], 403),
        (LIBRARY_READ, 403),
    ],
)
def test_privacy_officers_and_administrators_read_the_records(client_for, tenant, permissions, status):
    response = client_for(tenant, permissions=permissions).get(URL)
    assert response.status_code == status
    if status == 403:
        assert "privacy.records.read" in response.json()["detail"]


def test_an_unknown_format_is_refused_and_leaves_no_export(client_for, tenant, in_tenant):
    response = client_for(tenant, permissions=READER).get(URL, params={"format": "xlsx"})
    assert response.status_code == 422
    with in_tenant(tenant) as session:
        assert _events(session, "privacy.records_of_processing.exported") == []


def test_the_console_prints_json_or_csv_and_records_it_in_the_institutions_trail(
    cli_env,  # noqa: F811
    committed_tenant,
    committed_db,
):
    from bookwarden.cli import app

    tenant_id = committed_tenant()
    runner = CliRunner()

    as_json = runner.invoke(
        app, granted(committed_db, ["privacy", "records", "--tenant", str(tenant_id), "--format", "json"])
    )
    as_csv = runner.invoke(
        app, granted(committed_db, ["privacy", "records", "--tenant", str(tenant_id), "--format", "csv"])
    )
    refused = runner.invoke(
        app, granted(committed_db, ["privacy", "records", "--tenant", str(tenant_id), "--format", "pdf"])
    )

    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["controller"]["institution_id"] == str(tenant_id)
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["category"] for r in rows] == [a["category"] for a in body["activities"]]
    assert refused.exit_code == 2 and "json, csv" in refused.output
    with tenant_session(committed_db, tenant_id) as session:
        exported = _events(session, "privacy.records_of_processing.exported")
    assert [(kind, details["format"]) for kind, _, details in exported] == [("console", "json"), ("console", "csv")]
