"""Opt-out is a gate: every route and command that lets patron data leave the institution passes through
the sharing gate (privacy/consent/gate.py), and a patron who objected does not come out of any of them.

OUTWARD_ROUTES and OUTWARD_COMMANDS list them, kept by hand beside the permission table: adding a way out
means adding its line here, in review. The code declares the same (the route's OpenAPI extension
`x-bookwarden-sharing`, the command's `@command(..., shares=)`), and the first tests hold the two equal
over every operation of the OpenAPI document and every console command.

Then each way out is run for real (SHARING), for two patrons whose data it would share, one of whom
objected: the objector's data must not come out, the other's must, and the gate's event must name the
request. The same run shows that withdrawing the objection lets the data flow again, that another
institution's objection about a patron with the very same id changes nothing here, and that direct
marketing is refused as a purpose.

What no list can catch, tests/invariants/test_audit_coverage.py catches with `assert_gated`: any route or
command whose run records a sharing (a disclosure made, patrons exported, a publisher report released, a
mailing sent) must be listed here and must have asked the gate in the same request.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert, select, text
from typer.testing import CliRunner

from bookwarden import cli
from bookwarden.api.app import create_app
from bookwarden.audit.events import Action
from bookwarden.core.config import Settings
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole, Permission
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.core.purposes import REFUSED_MAIL_KINDS, SHARING_MARKER, SharingPath
from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.library import records as library
from bookwarden.library.models import Loan, Patron
from bookwarden.library.schemas import PatronCreate
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import open_mail
from bookwarden.privacy.consent import objections
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent.models import ConsentMethod
from bookwarden.privacy.consent.service import Channel, Choice, Topic
from bookwarden.privacy.reports import catalogue
from tests.e2e.test_cli import cli_env, granted  # noqa: F401 - fixture

# Every way patron data leaves the institution, and by which path through the gate.
OUTWARD_ROUTES: dict[tuple[str, str], SharingPath] = {
    ("POST", "/api/v1/privacy/disclosures"): SharingPath.DISCLOSURE,
    ("GET", "/api/v1/patrons/exports/{approval_id}"): SharingPath.BULK_EXPORT,
    ("POST", "/api/v1/reports/publishers"): SharingPath.PUBLISHER_REPORT,
    ("POST", "/api/v1/privacy/mailings"): SharingPath.OPTIONAL_MAIL,
}
OUTWARD_COMMANDS: dict[tuple[str, ...], SharingPath] = {
    ("reports", "publishers"): SharingPath.PUBLISHER_REPORT,
}
# Console pages that let patron data leave, each through the service of the route named (the service asks the
# gate, so the route's run below covers it; tests/web/test_console_actions.py runs each page with an objector).
OUTWARD_PAGES: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/console/privacy/disclosures"): ("POST", "/api/v1/privacy/disclosures"),
    ("POST", "/console/privacy/publisher-reports"): ("POST", "/api/v1/reports/publishers"),
}
# What a sharing records when it happens; each must come with the gate's event of the same request.
SHARING_ACTIONS = frozenset(
    {Action.DISCLOSED, Action.PATRON_EXPORTED, Action.PUBLISHER_REPORT_RELEASED, Action.MAILING_SENT}
)
OFFICER = BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
DESK = BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF]
PUBLIC = "https://library.alpha.example"
CATALOGUE = "item_id,title,publisher\r\nb-1,Middlemarch,Penguin\r\nb-4,Middlemarch,Penguin\r\n"
FILLERS = 10  # patrons every report cell needs (k) before the two under test count at all
JAN = date(2026, 1, 10)


def assert_gated(seen, what: str, declared: bool) -> None:
    """For the audit-coverage runs: a run that recorded a sharing is declared, and asked the gate in the
    same request (`seen`: the events the run appended, as tests/invariants/audit_coverage.py reads them)."""
    shared = [e for e in seen if e.action in SHARING_ACTIONS and e.outcome == "succeeded"]
    if not shared:
        return
    assert declared, (
        f"{what} shares patron data beyond the institution ({shared[0].action}) but is not declared: mark it "
        "(route openapi_extra=sharing_marker(...), command shares=...) and list it in OUTWARD_ROUTES or "
        "OUTWARD_COMMANDS (tests/invariants/test_sharing_gate.py)"
    )
    for event in shared:
        asked = [e for e in seen if e.action == Action.SHARING_CHECKED and e.request_id == event.request_id]
        assert asked, f"{what} recorded {event.action} without asking the sharing gate in the same request"


# -- the declarations ---------------------------------------------------------------------------------


def _declared_routes() -> dict[tuple[str, str], str]:
    document = create_app(None, Settings(api_docs=True)).openapi()
    found = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and SHARING_MARKER in operation:
                found[(method.upper(), path)] = operation[SHARING_MARKER]
    return found


def _commands(typer_app, prefix: tuple[str, ...] = ()):
    for info in typer_app.registered_commands:
        yield (*prefix, info.name or info.callback.__name__), info.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


def test_every_route_of_the_openapi_document_that_shares_is_listed_and_every_listed_one_is_marked():
    assert _declared_routes() == {key: path.value for key, path in OUTWARD_ROUTES.items()}


def test_every_console_command_that_shares_is_listed_and_every_listed_one_is_marked():
    commands = list(_commands(cli.app))
    assert len(commands) > 40
    declared = {path: callback.shares for path, callback in commands if getattr(callback, "shares", None)}
    assert declared == OUTWARD_COMMANDS


def test_every_outward_page_is_a_page_calling_a_listed_way_out():
    from bookwarden.web.routing import PageRoute
    from tests.invariants.test_security_headers import _routes

    pages = {
        (method, r.path)
        for r in _routes(create_app(None, Settings()).routes)
        if isinstance(r, PageRoute)
        for method in r.methods
    }
    assert set(OUTWARD_PAGES) <= pages
    assert set(OUTWARD_PAGES.values()) <= set(OUTWARD_ROUTES)


def test_every_path_through_the_gate_has_a_way_out_listed_and_a_run_below():
    assert set(OUTWARD_ROUTES.values()) | set(OUTWARD_COMMANDS.values()) == set(SharingPath)
    assert set(SHARING) == set(OUTWARD_ROUTES)


# -- the runs: one per way out ----------------------------------------------------------------------------


@dataclass
class Place:
    """The institution a run shares from, and what the run needs to act there."""

    tenant: object
    client_for: Callable
    in_tenant: Callable

    def principal(self, permissions) -> Principal:
        return Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), self.tenant.id, frozenset(permissions))


@dataclass(frozen=True)
class Way:
    """How to give patrons data this way would share, share it, and read whose data came out."""

    scope: str  # the objection that must stop it
    prepare: Callable[[Place, list[uuid.UUID]], None]
    share: Callable[[Place, list[uuid.UUID], str | None], object]  # purpose None: the way's default
    left: Callable[[Place, object, list[uuid.UUID]], set[uuid.UUID]]


def _patrons(place: Place, n: int) -> list[uuid.UUID]:
    with place.in_tenant(place.tenant) as session:
        made = [
            library.create(
                session, library.PATRONS, PatronCreate(name="Reader", email=f"r{uuid.uuid4().hex[:8]}@alpha.example")
            ).id
            for _ in range(n)
        ]
        return made


def _address(session, patron_id) -> str:
    return library.email_on_file(session, session.get(Patron, (session.tenant_id, patron_id)))


# disclosures: the response names whose data may be shared; the record names who was shared


def _disclose(place: Place, ids, purpose):
    body = {
        "recipient": "Metro Analytics Ltd",
        "kind": "usage_analysis",
        "purpose": purpose or "usage_analysis",
        "basis": "legitimate_interests",
        "categories": ["circulation_history"],
        "patron_ids": [str(p) for p in ids],
    }
    return place.client_for(place.tenant, permissions=OFFICER).post("/api/v1/privacy/disclosures", json=body)


def _disclosed(place: Place, response, ids) -> set[uuid.UUID]:
    if response.status_code == 409:
        return set()
    assert response.status_code == 201, response.text
    made = response.json()
    with place.in_tenant(place.tenant) as session:
        recorded = session.execute(
            text("SELECT patron_id FROM disclosure_subjects WHERE disclosure_id = :d"), {"d": made["id"]}
        ).scalars()
        return {uuid.UUID(p) for p in made["patron_ids"]} | set(recorded)


# the bulk export: whose ids are in the file


def _export(place: Place, ids, purpose):
    asker = place.client_for(place.tenant, permissions=OFFICER)
    asked = asker.post("/api/v1/patrons/exports", json={"format": "jsonl", **({"purpose": purpose} if purpose else {})})
    if asked.status_code != 202:
        return asked
    checker = place.client_for(place.tenant, permissions=OFFICER)
    assert checker.post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200
    return asker.get(f"/api/v1/patrons/exports/{asked.json()['id']}")


def _exported(place: Place, response, ids) -> set[uuid.UUID]:
    assert response.status_code == 200, response.text
    return {uuid.UUID(json.loads(line)["id"]) for line in response.text.splitlines()} & set(ids)


# publisher reports: counts only, so the two patrons under test borrow differently (one loan, two loans)
# on top of FILLERS patrons with one loan each; the cell's extra loans say whose were counted


def _lend(place: Place, ids) -> None:
    fillers = _patrons(place, FILLERS)
    when = datetime.combine(JAN, datetime.min.time(), UTC)
    loans = [(p, "b-1") for p in fillers] + [(p, item) for n, p in enumerate(ids) for item in ("b-1", "b-4")[: n + 1]]
    with place.in_tenant(place.tenant) as session:
        if not catalogue.has_publisher(session, session.tenant_id, "Penguin"):
            catalogue.load(session, place.principal(Permission), CATALOGUE)
        session.execute(
            insert(Loan),
            [
                {"tenant_id": session.tenant_id, "id": uuid.uuid4(), "patron_id": p, "item_id": item,
                 "borrowed_at": when, "due_at": when}
                for p, item in loans
            ],
        )  # fmt: skip


def _release(place: Place, ids, purpose):
    body = {"publisher": "Penguin", "first_month": "2026-01", **({"purpose": purpose} if purpose else {})}
    permissions = {Permission.REPORTS_PUBLISHERS}
    return place.client_for(place.tenant, permissions=permissions).post("/api/v1/reports/publishers", json=body)


def _counted(cells: list[dict], ids) -> set[uuid.UUID]:
    [cell] = [c for c in cells if c["title"] == "Middlemarch"] or [{"loans": 0, "patrons": 0}]
    extra = cell["loans"] - FILLERS if cell["patrons"] >= FILLERS else None
    assert extra in (0, 1, 2, 3), f"a cell of {cell}: the fillers alone are {FILLERS} patrons with one loan each"
    return {p for n, p in enumerate(ids) if extra & (n + 1)}


def _reported(place: Place, response, ids) -> set[uuid.UUID]:
    assert response.status_code == 201, response.text
    return _counted(response.json()["cells"], ids)


# optional mail: who is in the outbox


def _subscribe(place: Place, ids) -> None:
    with place.in_tenant(place.tenant) as session:
        for patron_id in ids:
            consent.set_preferences(
                session,
                place.principal(DESK),
                patron_id,
                [Choice(Channel.EMAIL, Topic.NEWSLETTERS, True)],
                method=ConsentMethod.FORM,
                notice_version="2026-03",
            )


def _mail(place: Place, ids, purpose):
    body = {"topic": purpose or "newsletters", "subject": "Alpha news", "message": "The reading room reopens."}
    sender = place.client_for(place.tenant, permissions={Permission.MAILINGS_SEND})
    return sender.post("/api/v1/privacy/mailings", json=body)


def _mailed(place: Place, response, ids) -> set[uuid.UUID]:
    assert response.status_code == 202, response.text
    with place.in_tenant(place.tenant) as session:
        sent = session.scalars(select(OutboxMessage).where(OutboxMessage.category == MailCategory.OPTIONAL.value))
        addresses = {open_mail(session, message).to for message in sent}
        return {p for p in ids if _address(session, p) in addresses}


def _nothing(place: Place, ids) -> None:
    """Every patron is already what a disclosure or an export shares."""


SHARING: dict[tuple[str, str], Way] = {
    ("POST", "/api/v1/privacy/disclosures"): Way("third_party_disclosure", _nothing, _disclose, _disclosed),
    ("GET", "/api/v1/patrons/exports/{approval_id}"): Way("third_party_disclosure", _nothing, _export, _exported),
    ("POST", "/api/v1/reports/publishers"): Way("third_party_disclosure", _lend, _release, _reported),
    ("POST", "/api/v1/privacy/mailings"): Way("purpose:newsletters", _subscribe, _mail, _mailed),
}
WAYS = sorted(SHARING)


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)
    monkeypatch.setenv("BOOKWARDEN_PUBLIC_URL", PUBLIC)  # optional mail carries an https unsubscribe link


@pytest.fixture
def place(tenant, client_for, in_tenant) -> Place:
    return Place(tenant, client_for, in_tenant)


def _object(place: Place, patron_id, scope, *, withdraw=False) -> None:
    with place.in_tenant(place.tenant) as session:
        change = objections.withdraw_objection if withdraw else objections.record_objection
        change(session, patron_id, scope, actor=place.principal(OFFICER))


def _gate_events(place: Place, response) -> list[dict]:
    with place.in_tenant(place.tenant) as session:
        return list(
            session.execute(
                text("SELECT details FROM audit_events WHERE action = :a AND request_id = :r ORDER BY seq"),
                {"a": Action.SHARING_CHECKED.value, "r": response.headers["x-request-id"]},
            ).scalars()
        )


@pytest.mark.parametrize("way", WAYS, ids=[f"{m} {p}" for m, p in WAYS])
def test_a_patron_who_objected_does_not_come_out_until_they_withdraw(place, way):
    run = SHARING[way]
    ann, bo = _patrons(place, 2)
    run.prepare(place, [ann, bo])
    _object(place, bo, run.scope)

    shared = run.share(place, [ann, bo], None)

    assert run.left(place, shared, [ann, bo]) == {ann}, f"{way}: the patron who objected came out"
    [asked] = _gate_events(place, shared)
    assert asked["path"] == OUTWARD_ROUTES[way].value and asked["excluded"] == 1
    assert asked["excluded_reasons"] == [f"objected:{run.scope}=1"]

    _object(place, bo, run.scope, withdraw=True)
    again = run.share(place, [ann, bo], None)
    assert run.left(place, again, [ann, bo]) >= {bo}, f"{way}: a withdrawn objection still keeps the data in"
    assert _gate_events(place, again)[0]["excluded"] == 0


@pytest.mark.parametrize("way", WAYS, ids=[f"{m} {p}" for m, p in WAYS])
def test_another_institutions_objection_about_the_same_patron_id_changes_nothing_here(place, other_tenant, way):
    run = SHARING[way]
    ann, bo = _patrons(place, 2)
    run.prepare(place, [ann, bo])
    elsewhere = Place(other_tenant, place.client_for, place.in_tenant)
    with place.in_tenant(other_tenant) as session:  # the same ids, as another institution's patrons
        session.execute(insert(Patron), [{"tenant_id": other_tenant.id, "id": p, "name": b"-"} for p in (ann, bo)])
    _object(elsewhere, bo, run.scope)
    with place.in_tenant(other_tenant) as session:
        assert objections.has_objected(session, bo, run.scope)

    shared = run.share(place, [ann, bo], None)

    assert run.left(place, shared, [ann, bo]) == {ann, bo}
    assert _gate_events(place, shared)[0]["excluded"] == 0


@pytest.mark.parametrize("way", WAYS, ids=[f"{m} {p}" for m, p in WAYS])
@pytest.mark.parametrize("purpose", [*REFUSED_MAIL_KINDS, "email_marketing", "targeted_advertising"])
def test_direct_marketing_is_refused_as_a_purpose_on_every_way_out(place, way, purpose):
    run = SHARING[way]
    ann, bo = _patrons(place, 2)
    run.prepare(place, [ann, bo])

    refused = run.share(place, [ann, bo], purpose)

    problem = refused.json()
    if OUTWARD_ROUTES[way] is SharingPath.OPTIONAL_MAIL and purpose not in REFUSED_MAIL_KINDS:
        # Mail kinds are a closed list: a name that is no kind at all is refused by the schema.
        assert refused.status_code == 422 and problem["type"].endswith("validation-error"), refused.text
    else:
        assert refused.status_code == 403, refused.text
        assert problem["type"].endswith("direct-marketing-refused") and "direct marketing" in problem["detail"]
    with place.in_tenant(place.tenant) as session:
        actions = set(session.execute(text("SELECT action FROM audit_events")).scalars())
        assert not actions & {a.value for a in SHARING_ACTIONS}
        assert session.execute(text("SELECT count(*) FROM outbox WHERE category = 'optional'")).scalar_one() == 0


def test_a_disclosure_about_one_patron_who_objected_is_refused_whole_unless_the_law_obliges_it(place):
    [bo] = _patrons(place, 1)
    _object(place, bo, "third_party_disclosure")

    refused = _disclose(place, [bo], None)
    body = {
        "recipient": "District Court",
        "kind": "legal_request",
        "purpose": "court_order",
        "basis": "legal_obligation",
        "categories": ["circulation_history"],
        "patron_ids": [str(bo)],
    }
    obliged = place.client_for(place.tenant, permissions=OFFICER).post("/api/v1/privacy/disclosures", json=body)

    assert refused.status_code == 409 and refused.json()["type"].endswith("objected"), refused.text
    assert obliged.status_code == 201 and obliged.json()["patron_ids"] == [str(bo)], obliged.text
    [asked] = _gate_events(place, obliged)
    assert asked["legal_obligation"] is True and asked["overridden"] == 1 and asked["excluded"] == 0


# -- the console's way out --------------------------------------------------------------------------------


def test_the_console_release_leaves_out_a_patron_who_objected(cli_env, committed_db, committed_tenant):  # noqa: F811
    tenant_id = committed_tenant()
    committed = Place(type("T", (), {"id": tenant_id})(), None, lambda t: tenant_session(committed_db, t.id))
    ann, bo = _patrons(committed, 2)
    _lend(committed, [ann, bo])
    _object(committed, bo, "third_party_disclosure")

    def release() -> set[uuid.UUID]:
        args = ["reports", "publishers", "--tenant", str(tenant_id), "--publisher", "Penguin"]
        result = CliRunner().invoke(cli.app, granted(committed_db, [*args, "--from", "2026-01", "--to", "2026-01"]))
        assert result.exit_code == 0, result.output
        return _counted(json.loads(result.stdout)["cells"], [ann, bo])

    assert release() == {ann}
    _object(committed, bo, "third_party_disclosure", withdraw=True)
    assert release() == {ann, bo}
    refused = CliRunner().invoke(
        cli.app,
        ["reports", "publishers", "--tenant", str(tenant_id), "--publisher", "Penguin", "--from", "2026-01",
         "--to", "2026-01", "--purpose", "direct_marketing"],
    )  # fmt: skip
    assert refused.exit_code != 0
    with tenant_session(committed_db, tenant_id) as session:
        asked = (
            session.execute(
                text("SELECT details FROM audit_events WHERE action = :a ORDER BY seq"),
                {"a": Action.SHARING_CHECKED.value},
            )
            .scalars()
            .all()
        )
    assert [(a["path"], a["excluded"]) for a in asked] == [("publisher_report", 1), ("publisher_report", 0)]
