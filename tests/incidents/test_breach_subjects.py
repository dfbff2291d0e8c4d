"""A breach's scope traced to every person: a stolen token reads, from one address, loans, posts, searches, reading
lists and staff accounts of two institutions out of three. Marking the incident a breach follows each record to
the person it is about through the privacy registry's subject links, and lists exactly those patrons and staff
(no one the attacker did not reach, nothing of the third institution). A patron erased, and a staff account
deleted, before the breach was found are counted as affected, never named: their ids are nowhere in the scope,
the incident's rows, the timeline or the notices."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.access.roles.notices import add_security_contact
from bookwarden.core.classification import Category, SubjectKind
from bookwarden.core.permissions import LIBRARY_READ, LIBRARY_WRITE, Permission
from bookwarden.db.session import platform_session, tenant_session
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.tokens import service as tokens
from bookwarden.incidents import affected, service
from bookwarden.incidents.affected import BreachTarget
from bookwarden.library import records as library
from bookwarden.library.schemas import LoanCreate, PostCreate, ReadingListCreate, ReadingListItemCreate, SearchCreate
from bookwarden.notify.models import OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.subjects import data as subject_data
from bookwarden.privacy.subjects import erasure
from tests.helpers import acting
from tests.privacy.test_complaints import _account, _admin, _patron

HANDLER = acting(None, Permission.PLATFORM_INCIDENTS_HANDLE)
ATTACKER = "203.0.113.77"
STOLEN = sorted(LIBRARY_READ | LIBRARY_WRITE | {Permission.ACCOUNTS_READ})
NOW = datetime.now(UTC)


def _client(app, token: str, address: str) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False, client=(address, 50000))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _token(db, tenant, stolen: list | None = None) -> str:
    with tenant_session(db, tenant.id) as session:
        row, secret = tokens.issue_api_token(session, "integration", STOLEN, timedelta(hours=1))
    if stolen is not None:
        stolen.append(row.id)
    return secret


def _records(session, patron_id: UUID) -> dict[str, UUID]:
    """One of each record a patron has: a loan, a post, a search, a reading list with an item."""
    when = NOW - timedelta(days=3)
    loan = library.create(
        session, library.LOANS, LoanCreate(patron_id=patron_id, item_id="bk-1", item_title="A Title", borrowed_at=when,
                                           due_at=when + timedelta(days=14)),
    )  # fmt: skip
    post = library.create(session, library.POSTS, PostCreate(patron_id=patron_id, board="general", body="Hello."))
    search = library.create(session, library.SEARCHES, SearchCreate(patron_id=patron_id, query="local history"))
    reading_list = library.create(session, library.READING_LISTS, ReadingListCreate(patron_id=patron_id, title="Mine"))
    item = library.create(
        session, library.READING_LIST_ITEMS, ReadingListItemCreate(list_id=reading_list.id, item_id="bk-2", note="n")
    )
    return {"loan": loan.id, "post": post.id, "search": search.id, "list": reading_list.id, "item": item.id}


def _institution(db, tenant, n_patrons: int = 4):
    with tenant_session(db, tenant.id) as session:
        add_security_contact(session, f"security@{tenant.slug}.example")
        patrons = [_patron(session, f"{tenant.slug} Patron {i}", f"{tenant.slug}{i}@patrons.example")
                   for i in range(n_patrons)]  # fmt: skip
        records = {p: _records(session, p) for p in patrons}
        staff = [_account(session, f"{tenant.slug}-staff{i}", email=f"staff{i}@{tenant.slug}.example").id
                 for i in range(3)]  # fmt: skip
    return {"tenant": tenant, "patrons": patrons, "records": records, "staff": staff}


def _mails(session) -> list:
    return [open_mail(session, row) for row in session.scalars(select(OutboxMessage))]


def _get(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, (path, response.text)


@pytest.fixture
def world(db, app, make_tenant):
    names = (("north", "North University"), ("south", "South Library"), ("east", "East College"))
    north, south, east = (_institution(db, make_tenant(slug, name)) for slug, name in names)
    stolen: list[UUID] = []
    thief = {w["tenant"].id: _client(app, _token(db, w["tenant"], stolen), ATTACKER) for w in (north, south)}
    desk = {w["tenant"].id: _client(app, _token(db, w["tenant"]), "198.51.100.10") for w in (north, south, east)}
    n, s = north["records"], south["records"]
    np, sp = north["patrons"], south["patrons"]
    at_north, at_south = thief[north["tenant"].id], thief[south["tenant"].id]
    # North: a loan, a post, a search and a reading-list item of four patrons; one staff account; and the loan of
    # a patron erased before the breach is found, and a staff account deleted since.
    _get(at_north, f"/api/v1/loans/{n[np[0]]['loan']}")
    _get(at_north, f"/api/v1/posts/{n[np[1]]['post']}")
    _get(at_north, f"/api/v1/searches/{n[np[2]]['search']}")
    _get(at_north, f"/api/v1/reading-list-items/{n[np[3]]['item']}")
    _get(at_north, f"/api/v1/accounts/{north['staff'][0]}")
    with tenant_session(db, north["tenant"].id) as session:
        gone = _patron(session, "North Gone", "gone@patrons.example")
        gone_loan = _records(session, gone)["loan"]
    _get(at_north, f"/api/v1/loans/{gone_loan}")
    _get(at_north, f"/api/v1/accounts/{north['staff'][2]}")
    # South: a reading list and a loan of two patrons, one staff account.
    _get(at_south, f"/api/v1/reading-lists/{s[sp[0]]['list']}")
    _get(at_south, f"/api/v1/loans/{s[sp[1]]['loan']}")
    _get(at_south, f"/api/v1/accounts/{south['staff'][1]}")
    # Ordinary work from the desk, in all three: not the breach.
    for w in (north, south, east):
        records = w["records"][w["patrons"][-1]]
        _get(desk[w["tenant"].id], f"/api/v1/loans/{records['loan']}")
        _get(desk[w["tenant"].id], f"/api/v1/posts/{records['post']}")
        _get(desk[w["tenant"].id], f"/api/v1/accounts/{w['staff'][1 if w is north else 0]}")
    with tenant_session(db, north["tenant"].id) as session:
        erasure.erase_patron(session, gone)
        accounts.delete_account(session, _admin(north["tenant"].id), north["staff"][2])
    with platform_session(db) as session:
        incident = service.open_incident(
            session, HANDLER, title="Stolen integration token", summary="Records read from one address."
        )
    return {"north": north, "south": south, "east": east, "incident": incident, "stolen": stolen,
            "erased": (gone, gone_loan, north["staff"][2])}  # fmt: skip


def _mark(db, world):
    # The address and the stolen tokens: an erased patron's events keep no address (erasure forgets it, with
    # the patron), so only the actor still finds them.
    targets = [BreachTarget("address", ATTACKER), *(BreachTarget("actor", str(t)) for t in world["stolen"])]
    return affected.mark_breach(
        db, HANDLER, world["incident"].id, since=NOW - timedelta(hours=1), targets=targets,
        data=[Category.CIRCULATION_HISTORY, Category.USER_CONTENT], measures="The token was revoked.",
        contact="incidents@bookwarden.example",
    )  # fmt: skip


def test_a_breach_through_every_kind_of_record_reaches_exactly_the_people_behind_them(db, world):
    north, south, east = world["north"], world["south"], world["east"]

    scope = _mark(db, world)

    found = {i.institution: (sorted(i.subjects), sorted(i.staff), i.erased_subjects) for i in scope.institutions}
    assert found == {
        north["tenant"].id: (sorted(north["patrons"][:4]), [north["staff"][0]], 2),
        south["tenant"].id: (sorted(south["patrons"][:2]), [south["staff"][1]], 0),
    }
    with platform_session(db) as session:
        incident = service.get(session, world["incident"].id)
    assert sorted(incident.institutions) == sorted([north["tenant"].id, south["tenant"].id])
    with tenant_session(db, east["tenant"].id) as session:  # the third institution: untouched
        assert session.execute(text("SELECT count(*) FROM incident_impacts")).scalar_one() == 0
        assert not [m for m in _mails(session) if "breach" in m.subject]
    with tenant_session(db, north["tenant"].id) as session:
        [notice] = [m for m in _mails(session) if "breach notice" in m.subject]
    assert "staff accounts affected: 1" in notice.body
    assert "already been erased: 2" in notice.body


def test_records_erased_before_the_breach_was_found_are_counted_and_never_named(db, world):
    gone, gone_loan, deleted_staff = world["erased"]
    north = world["north"]

    scope = _mark(db, world)

    hidden = {str(gone), str(gone_loan), str(deleted_staff)}
    assert not hidden & set(json.dumps(scope.model_dump(mode="json")).split('"'))
    with tenant_session(db, north["tenant"].id) as session:
        for table in ("incident_subjects", "incident_staff", "incident_notices", "incident_impacts"):
            rows = session.execute(text(f"SELECT to_jsonb(t)::text FROM {table} t")).scalars().all()  # noqa: S608
            assert not any(h in row for row in rows for h in hidden), table
        notices = [m for m in _mails(session) if "breach" in m.subject]
        assert notices and not any(h in m.body for m in notices for h in hidden)
        events = session.execute(
            text("SELECT details::text FROM audit_events WHERE action IN ('breach.marked', 'incident.affected')")
        ).scalars()
        assert not any(h in e for e in events for h in hidden)
    with platform_session(db) as session:
        timeline = session.execute(text("SELECT details::text FROM incident_timeline")).scalars().all()
    assert timeline and not any(h in line for line in timeline for h in hidden)


def test_each_record_leads_to_its_person_by_the_registrys_links(db, world):
    north = world["north"]
    patron = north["patrons"][3]
    records = north["records"][patron]
    with tenant_session(db, north["tenant"].id) as session:
        portal = _account(session, "north-portal", email="portal@north.example", patron_id=patron).id
        owners = subject_data.owners(session, [*records.values(), north["staff"][0], portal, world["erased"][1]])
    assert owners == {
        **{r: {(SubjectKind.PATRON, patron)} for r in records.values()},
        north["staff"][0]: {(SubjectKind.ACCOUNT, north["staff"][0])},  # staff: their own subject
        portal: {(SubjectKind.PATRON, patron)},  # a patron's own account is the patron
    }  # the erased patron's loan is gone: it leads nowhere
    with tenant_session(db, world["south"]["tenant"].id) as session:
        assert subject_data.owners(session, records.values()) == {}  # another institution's records: not found
