"""Bulk export of patrons under maker-checker: asked by one, approved by another, downloaded once by the asker."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_WRITE, BuiltinRole

PRIVACY = BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
# Two privacy officers with nothing but the built-in role: one asks, the other approves.
CHECKER = PRIVACY
EXPORTS = "/api/v1/patrons/exports"
COUNT = 7


@pytest.fixture
def names(client_for, tenant):
    writer = client_for(tenant, permissions=LIBRARY_WRITE)
    made = []
    for n in range(COUNT):
        # One name a spreadsheet would run as a formula: the CSV must neutralise it.
        name = '=HYPERLINK("http://evil")' if n == 0 else f"Patron {n}"
        body = {"name": name, "email": f"p{n}@example.org", "barcode": f"3{n:013d}"}
        response = writer.post("/api/v1/patrons", json=body)
        assert response.status_code == 201, response.text
        made.append(name)
    return made


@pytest.fixture
def asker(client_for, tenant):
    return client_for(tenant, permissions=PRIVACY)


@pytest.fixture
def checker(client_for, tenant):
    return client_for(tenant, permissions=CHECKER)


def _ask(client, fmt="jsonl") -> str:
    asked = client.post(EXPORTS, json={"format": fmt})
    assert asked.status_code == 202, asked.text
    body = asked.json()
    assert body["action"] == "export_patrons" and body["status"] == "pending"
    assert body["params"] == {"format": fmt, "purpose": "patron_administration"}  # the default purpose
    return body["id"]


def _approved(asker, checker, fmt="jsonl") -> str:
    approval_id = _ask(asker, fmt)
    approved = checker.post(f"/api/v1/approvals/{approval_id}/approve")
    assert approved.status_code == 200, approved.text
    return approval_id


def test_the_asker_cannot_approve_their_own_export(asker, client_for, tenant):
    # Even holding every permission the approval route needs, the maker is not the checker.
    maker = client_for(tenant, permissions=CHECKER)
    approval_id = _ask(maker)
    own = maker.post(f"/api/v1/approvals/{approval_id}/approve")
    assert own.status_code == 409 and own.json()["type"] == "urn:bookwarden:problem:segregation-of-duties"
    assert maker.get(f"{EXPORTS}/{approval_id}").status_code == 409  # still pending: nothing to download


def test_no_download_without_an_approval(asker, checker, names):
    approval_id = _ask(asker)
    pending = asker.get(f"{EXPORTS}/{approval_id}")
    assert pending.status_code == 409 and pending.json()["type"] == "urn:bookwarden:problem:approval-required"
    assert checker.post(f"/api/v1/approvals/{approval_id}/reject").status_code == 200
    assert asker.get(f"{EXPORTS}/{approval_id}").status_code == 409  # rejected
    assert asker.post(EXPORTS, json={"format": "xlsx"}).status_code == 422


def test_without_the_permission_nobody_asks_or_downloads(client_for, tenant, asker, checker):
    approval_id = _approved(asker, checker)
    staff = client_for(tenant)  # library read and write, no patrons.export
    assert staff.post(EXPORTS, json={"format": "jsonl"}).status_code == 403
    assert staff.get(f"{EXPORTS}/{approval_id}").status_code == 403


def test_after_approval_the_asker_downloads_every_patron_decrypted_once(asker, checker, names, in_tenant, tenant):
    approval_id = _approved(asker, checker)
    downloaded = asker.get(f"{EXPORTS}/{approval_id}")
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in downloaded.headers["content-disposition"]
    patrons = [json.loads(line) for line in downloaded.text.splitlines()]
    assert len(patrons) == COUNT
    assert sorted(p["name"] for p in patrons) == sorted(names)
    assert {p["email"] for p in patrons} == {f"p{n}@example.org" for n in range(COUNT)}

    again = asker.get(f"{EXPORTS}/{approval_id}")
    assert again.status_code == 409 and "downloaded already" in again.json()["detail"]

    with in_tenant(tenant) as session:
        rows = session.execute(
            text(
                "SELECT outcome, details FROM audit_events WHERE action = 'patron.exported' "
                "AND target_kind = 'approval' AND target_id = :a"
            ),
            {"a": approval_id},
        ).all()
    assert len(rows) == 1
    outcome, details = rows[0]
    assert outcome == "succeeded"
    assert details == {"approval_id": approval_id, "format": "jsonl", "count": COUNT, "completed": True, "excluded": 0}
    assert not any(name in json.dumps(details) for name in names)  # the count, never a value


def test_csv_export_guards_formulas(asker, checker, names):
    approval_id = _approved(asker, checker, "csv")
    downloaded = asker.get(f"{EXPORTS}/{approval_id}")
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(downloaded.text)))
    assert len(rows) == COUNT
    exported = sorted(row["name"] for row in rows)
    assert exported == sorted("'" + n if n.startswith("=") else n for n in names)


def test_another_principal_cannot_download(asker, checker, client_for, tenant, other_tenant, names):
    approval_id = _approved(asker, checker)
    assert checker.get(f"{EXPORTS}/{approval_id}").status_code == 404  # the approver is not the asker
    colleague = client_for(tenant, permissions=PRIVACY)
    assert colleague.get(f"{EXPORTS}/{approval_id}").status_code == 404
    stranger = client_for(other_tenant, permissions=PRIVACY)
    assert stranger.get(f"{EXPORTS}/{approval_id}").status_code == 404
    assert asker.get(f"{EXPORTS}/{approval_id}").status_code == 200  # and the asker's download is still there


def test_an_approval_older_than_a_day_is_refused(asker, checker, names, in_tenant, tenant):
    approval_id = _approved(asker, checker)
    with in_tenant(tenant) as session:
        session.execute(
            text("UPDATE approval_requests SET decided_at = now() - interval '24 hours 1 minute' WHERE id = :i"),
            {"i": approval_id},
        )
    stale = asker.get(f"{EXPORTS}/{approval_id}")
    assert stale.status_code == 409 and "hours old" in stale.json()["detail"]


def test_asking_and_a_refused_download_are_in_the_trail(asker, checker, in_tenant, tenant):
    approval_id = _ask(asker)
    assert asker.get(f"{EXPORTS}/{approval_id}").status_code == 409
    with in_tenant(tenant) as session:
        actions = session.execute(text("SELECT action, outcome FROM audit_events ORDER BY seq")).all()
    assert ("approval.requested", "succeeded") in actions
    assert actions[-1][1] != "succeeded"  # the refusal, recorded as one


def test_two_downloads_at_once_cannot_both_pass_and_a_reader_who_stops_spends_it(committed_db, committed_tenant):
    """With real commits: the first download holds the approval locked while it streams."""
    import functools
    import uuid

    from bookwarden.access.approvals import service as approvals
    from bookwarden.audit import record as audit
    from bookwarden.core.errors import Conflict
    from bookwarden.core.principal import Principal, PrincipalKind
    from bookwarden.db.session import tenant_session
    from bookwarden.library import export, records, schemas

    tenant_id = committed_tenant()
    asker = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, PRIVACY)
    checker = Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, CHECKER)
    scope = functools.partial(tenant_session, committed_db, tenant_id)
    with scope() as session:
        for n in range(3):
            records.create(session, records.PATRONS, schemas.PatronCreate(name=f"Patron {n}"))
        approval_id = export.ask(session, asker, export.ExportFormat.JSONL).id
    with scope() as session:
        approvals.approve(session, checker, approval_id)

    context = audit.Context(principal=asker)
    fmt, first = export.open_download(committed_db, scope, asker, approval_id, context)
    assert fmt is export.ExportFormat.JSONL
    assert next(first) == b""  # the (empty) header of JSON lines: the download is under way
    with pytest.raises(Conflict, match="being downloaded right now"):
        export.open_download(committed_db, scope, asker, approval_id, context)
    assert len(next(first).splitlines()) == 3
    first.close()  # the reader goes away before the end: what it received was exported all the same
    with pytest.raises(Conflict, match="downloaded already"):
        export.open_download(committed_db, scope, asker, approval_id, context)
    with scope() as session:
        details = session.execute(
            text("SELECT details FROM audit_events WHERE action = 'patron.exported' AND target_id = :a"),
            {"a": approval_id},
        ).scalar_one()
    assert details["count"] == 3 and details["completed"] is False


def test_the_asker_cannot_approve_their_own_export_through_another_of_their_tokens(app, db, tenant, client_for):
    from tests.helpers import one_persons_clients

    first, second = one_persons_clients(app, db, tenant.id, BuiltinRole.PRIVACY_OFFICER)
    approval_id = _ask(first)
    for token in (first, second):
        own = token.post(f"/api/v1/approvals/{approval_id}/approve")
        assert own.status_code == 409 and own.json()["type"] == "urn:bookwarden:problem:segregation-of-duties"
    pending = second.get(f"{EXPORTS}/{approval_id}")
    assert pending.status_code in (404, 409)  # not this token's to download, and nothing approved anyway
    assert client_for(tenant, permissions=CHECKER).post(f"/api/v1/approvals/{approval_id}/approve").status_code == 200
    assert first.get(f"{EXPORTS}/{approval_id}").status_code == 200
