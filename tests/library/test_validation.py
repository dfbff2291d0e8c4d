"""Bad input gets a clear 422 naming the field, and nothing is stored (DESIGN invariant 5).

Each case here was accepted before: a NUL or an escape sequence stored in a patron's name, a
birth date in 9999, a loan borrowed in 9999 and due in year 1, `returned_at: 0` read as 1970,
`history: false` stored as 0 in a password policy, control characters in a consent's notice version.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.text import is_line, is_lines
from bookwarden.db.session import tenant_session
from bookwarden.library.models import Loan, Patron

PATRONS = "/api/v1/patrons"
LOANS = "/api/v1/loans"


def _count(db, tenant, model) -> int:
    with tenant_session(db, tenant.id) as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "Ann\x00Reader"),
        ("name", "Ann \x1b[31mReader"),  # a terminal escape sequence
        ("name", "Ann\nReader"),  # a name is one line
        ("name", "Ann\u007fReader"),
        ("name", " \t "),
        ("affiliation", "student\r"),
        ("postal_address", "1 Library Lane\x07"),
        ("birth_date", "9999-12-31"),
        ("birth_date", "1799-12-31"),
        ("birth_date", 0),
    ],
)
def test_a_patron_with_bad_text_or_dates_is_refused_and_nothing_is_stored(db, tenant, client_for, field, value):
    client = client_for(tenant, permissions={Permission.PATRONS_WRITE})
    body = {"name": "Ann Reader", field: value}
    response = client.post(PATRONS, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert _count(db, tenant, Patron) == 0


def test_good_text_still_passes(db, tenant, client_for):
    client = client_for(tenant, permissions={Permission.PATRONS_WRITE})
    body = {"name": "Zoë O'Brien-Łukasiewicz", "postal_address": "1 Lane\nFlat 2\tRear", "birth_date": "1990-05-01"}
    assert client.post(PATRONS, json=body).status_code == 201


@pytest.mark.parametrize(
    "change",
    [
        {"borrowed_at": "9999-01-01T00:00:00Z", "due_at": "9999-02-01T00:00:00Z"},
        {"due_at": "0001-01-01T00:00:00Z"},
        {"returned_at": 0},
        {"borrowed_at": "2026-01-01T10:00:00"},  # no offset: a different moment in every zone
        {"borrowed_at": 1767225600},
        {"returned_at": "2100-01-01T00:00:00Z"},
        {"due_at": "1899-12-31T23:00:00-02:00"},  # 1900 in UTC, 1899 as written: the year read is the one written
        {"item_title": "Middlemarch\x00"},
    ],
)
def test_a_loan_out_of_range_is_refused(db, tenant, client_for, change):
    client = client_for(tenant, permissions={Permission.PATRONS_WRITE, Permission.LOANS_WRITE})
    patron = client.post(PATRONS, json={"name": "Ann Reader"}).json()["id"]
    body = {"patron_id": patron, "item_id": "item-1", "borrowed_at": "2026-01-01T10:00:00Z",
            "due_at": "2026-01-15T10:00:00Z", **change}
    response = client.post(LOANS, json=body)
    assert response.status_code == 422, response.text
    assert _count(db, tenant, Loan) == 0


def test_a_password_policy_takes_numbers_not_booleans(db, tenant, client_for):
    admin = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    response = admin.put("/api/v1/password-policies/patron", json={"min_length": 10, "history": False})
    assert response.status_code == 422, response.text
    assert "history" in response.text


def test_a_cookie_choice_with_control_characters_in_its_notice_version_is_refused(db, tenant, client_for):
    anonymous = client_for(tenant)
    anonymous.headers.pop("Authorization")
    body = {"analytics": True, "preferences": False, "notice_version": "cookies-v1\x1b"}
    response = anonymous.put(f"/api/v1/portal/{tenant.slug}/cookie-choice", json=body)
    assert response.status_code == 422, response.text


def test_services_apply_the_same_text_rule_as_the_schema():
    assert is_line("Ann Reader", 200) and not is_line("Ann\nReader", 200) and not is_line("x" * 201, 200)
    assert is_lines("line one\nline two", 200) and not is_lines("bell\x07", 200) and not is_lines(" \n ", 200)
