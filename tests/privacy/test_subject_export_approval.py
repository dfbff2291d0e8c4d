"""One patron's access package outside a data-subject request takes two people (privacy/subjects/export.py
`build_for_staff`): one officer asks, another approves, the one who asked builds it once and its link is
downloaded once; over HTTP and at the console alike."""

from __future__ import annotations

import json
import uuid
from uuid import UUID

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from bookwarden.access.approvals import service as approvals
from bookwarden.core.config import get_settings
from bookwarden.core.errors import ApprovalRequired, Conflict
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.library import records as library
from bookwarden.privacy.subjects.models import SubjectExportPackage
from bookwarden.tenancy import service as tenancy
from tests.e2e.test_cli import cli_env, granted  # noqa: F401 - fixture
from tests.helpers import one_persons_clients

OFFICER = BuiltinRole.PRIVACY_OFFICER
PACKAGES = "/api/v1/privacy/subject-exports"
SOD = "urn:bookwarden:problem:segregation-of-duties"


def _patron(client, n: int = 0) -> str:
    made = client.post("/api/v1/patrons", json={"name": f"Asking Patron {n}", "barcode": f"5{n:013d}"})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _ask(client, patron_id: str) -> str:
    asked = client.post(f"{PACKAGES}/approvals", json={"patron_id": patron_id})
    assert asked.status_code == 202, asked.text
    body = asked.json()
    assert body["action"] == "export_subject" and body["params"] == {"patron_id": patron_id}
    return body["id"]


def _packages(db, tenant) -> int:
    with tenant_session(db, tenant.id) as session:
        return session.scalar(select(func.count()).select_from(SubjectExportPackage))


@pytest.fixture
def ann(app, db, tenant):
    """Two tokens of one privacy officer."""
    return one_persons_clients(app, db, tenant.id, OFFICER)


@pytest.fixture
def bob(app, db, tenant):
    return one_persons_clients(app, db, tenant.id, OFFICER, count=1)[0]


def test_outside_a_request_nothing_is_built_without_an_approval(db, tenant, ann, client_for):
    patron_id = _patron(client_for(tenant))
    refused = ann[0].post(PACKAGES, json={"patron_id": patron_id})
    assert refused.status_code == 409 and refused.json()["type"] == "urn:bookwarden:problem:approval-required"
    assert _packages(db, tenant) == 0


def test_the_asker_cannot_approve_their_own_package_through_another_token(db, tenant, ann, bob, client_for):
    patron_id = _patron(client_for(tenant))
    approval_id = _ask(ann[0], patron_id)
    for token in ann:
        own = token.post(f"/api/v1/approvals/{approval_id}/approve")
        assert own.status_code == 409 and own.json()["type"] == SOD
    still_pending = ann[0].post(PACKAGES, json={"patron_id": patron_id, "approval_id": approval_id})
    assert (
        still_pending.status_code == 409 and still_pending.json()["type"] == "urn:bookwarden:problem:approval-required"
    )
    assert bob.post(f"/api/v1/approvals/{approval_id}/approve").status_code == 200
    assert _packages(db, tenant) == 0


def test_once_approved_the_asker_builds_it_once_for_that_patron_and_its_link_works_once(
    db, tenant, ann, bob, client_for
):
    staff = client_for(tenant)
    patron_id, other_patron = _patron(staff, 1), _patron(staff, 2)
    approval_id = _ask(ann[0], patron_id)
    assert bob.post(f"/api/v1/approvals/{approval_id}/approve").status_code == 200

    # Bob approved it: it is not his to build; nor is it an approval for another patron.
    assert bob.post(PACKAGES, json={"patron_id": patron_id, "approval_id": approval_id}).status_code == 404
    other = ann[0].post(PACKAGES, json={"patron_id": other_patron, "approval_id": approval_id})
    assert other.status_code == 409 and "does not cover" in other.json()["detail"]
    both = {"patron_id": patron_id, "approval_id": approval_id, "request_id": str(uuid.uuid4())}
    assert ann[0].post(PACKAGES, json=both).status_code == 409

    built = ann[1].post(PACKAGES, json={"patron_id": patron_id, "approval_id": approval_id})  # the same person
    assert built.status_code == 201, built.text
    again = ann[0].post(PACKAGES, json={"patron_id": patron_id, "approval_id": approval_id})
    assert again.status_code == 409 and "built already" in again.json()["detail"]
    assert _packages(db, tenant) == 1

    anonymous = client_for(tenant)
    anonymous.headers.pop("Authorization")
    assert anonymous.get(built.json()["download_path"]).status_code == 200
    second = anonymous.get(built.json()["download_path"])
    assert second.status_code == 409 and "downloaded once already" in second.json()["detail"]
    with tenant_session(db, tenant.id) as session:
        (details,) = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'subject_export.built'")
        ).scalars()
    assert details["approval_id"] == approval_id and details["request_id"] is None


def test_an_approval_older_than_a_day_builds_nothing(db, tenant, ann, bob, client_for):
    patron_id = _patron(client_for(tenant))
    approval_id = _ask(ann[0], patron_id)
    assert bob.post(f"/api/v1/approvals/{approval_id}/approve").status_code == 200
    with tenant_session(db, tenant.id) as session:
        session.execute(
            text("UPDATE approval_requests SET decided_at = now() - interval '25 hours' WHERE id = :id"),
            {"id": approval_id},
        )
    late = ann[0].post(PACKAGES, json={"patron_id": patron_id, "approval_id": approval_id})
    assert late.status_code == 409 and "24 hours" in late.json()["detail"]


def test_the_console_asks_and_builds_only_under_an_approval_once(cli_env, committed_db, home):  # noqa: F811
    from bookwarden.cli import app as cli_app

    def run(*args: str):
        get_settings.cache_clear()
        return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)

    db = committed_db
    with platform_session(db) as session:
        tenant = tenancy.create_tenant(session, db.keyring, home, "north", "North University")
    with tenant_session(db, tenant.id) as session:
        patron = library.create(session, library.PATRONS, library.PATRONS.create(name="Console Patron"))
    # The console's operator, through an approved grant of the institution (issue 12: one door).
    args = granted(db, ["privacy", "export", "--tenant", "north", "--patron", str(patron.id)])
    asked = run(*args)
    assert asked.exit_code == 0 and "approval request" in asked.stdout
    approval_id = UUID(asked.stdout.split("approval request ", 1)[1].split(":", 1)[0])
    with pytest.raises(ApprovalRequired):  # asked, not approved
        run(*args, "--approval", str(approval_id))
    checker = Principal(
        PrincipalKind.API_TOKEN, uuid.uuid4(), tenant.id, BUILTIN_PERMISSIONS[OFFICER] | {Permission.ACCOUNTS_READ}
    )
    with tenant_session(db, tenant.id) as session:
        approvals.approve(session, checker, approval_id)
    built = run(*args, "--approval", str(approval_id))
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["patron_id"] == str(patron.id)
    with pytest.raises(Conflict, match="built already"):
        run(*args, "--approval", str(approval_id))
