"""Demo data for `make run`: two institutions with patrons and their activity.

Seeded once (a second run only issues fresh tokens), through the same services the API
uses, so the demo exercises encryption, blind indexes and row-level security for real. Local use
only: it needs no operator and prints credentials, so it refuses a database that holds any other
institution (`refuse_real_institutions`).
"""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from rich.progress import Progress
from sqlalchemy import select

from bookwarden.core.config import Settings
from bookwarden.core.errors import Conflict
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, LIBRARY_READ, LIBRARY_WRITE, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db.session import Database, platform_session, tenant_session
from bookwarden.identity import roles as access
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.models import AccountKind
from bookwarden.identity.tokens import service as tokens
from bookwarden.library import records, schemas
from bookwarden.library.models import Patron
from bookwarden.privacy.notices import service as notices
from bookwarden.tenancy import service as tenancy
from bookwarden.tenancy.models import Tenant
from bookwarden.web import demo_logins

DESK = "desk"
INSTITUTIONS = {
    "northfield-university": "Northfield University Library",
    "riverside-public": "Riverside Public Library",
}
PATRONS_EACH = 200
PORTAL_PATRONS = 3  # demo patrons who get a portal account (reader1, reader2...)
DEMO_NOTICE = (
    "This is a demo institution. We hold your name, contact details, loans, searches, reading lists and posts "
    "to run the library.\n\nIn the patron portal you can see, download, correct and erase your data, choose "
    "which optional messages you receive, and complain."
)
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim", "Hedy", "Claude"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners-Lee"]
TITLES = [
    "Middlemarch",
    "The Art of Computer Programming",
    "Invisible Cities",
    "Silent Spring",
    "Beloved",
    "Gödel, Escher, Bach",
    "The Left Hand of Darkness",
    "A Brief History of Time",
    "Things Fall Apart",
]
QUERIES = ["climate adaptation", "medieval manuscripts", "graph theory", "poetry anthologies", "local history"]


@dataclass(frozen=True)
class DemoAccess:
    api_token: str
    desk_username: str
    desk_password: str
    # The portal accounts of the first demo patrons: (username, password), passwords new on every run.
    patron_logins: tuple[tuple[str, str], ...] = ()


def seed(db: Database, settings: Settings, patrons_each: int = PATRONS_EACH) -> dict[str, DemoAccess]:
    """Create the demo institutions if absent; return fresh credentials for each.

    Each gets an API token, a circulation-desk account and portal accounts for its first demo patrons
    (passwords set anew on every run), shown on the start page (web/demo_logins.py) and printed.
    """
    refuse_real_institutions(db)
    rng = random.Random(2026)  # noqa: S311 - demo data, not secrets
    issued = {}
    for slug, name in INSTITUTIONS.items():
        with platform_session(db) as session:
            tenant = session.query(Tenant).filter_by(slug=slug).one_or_none()
            fresh = tenant is None
            if fresh:
                tenant = tenancy.create_tenant(session, db.keyring, settings.resolved_home, slug, name)
        if fresh:
            add_patrons(db, tenant, rng, patrons_each)
        with tenant_session(db, tenant.id) as session:
            token = tokens.issue_api_token(session, "demo", sorted(LIBRARY_READ | LIBRARY_WRITE), timedelta(days=30))[1]
            _privacy_notice(session, tenant)
            issued[slug] = DemoAccess(token, DESK, _desk_password(session, tenant), _patron_logins(session, tenant))
    demo_logins.write(settings, _logins(issued))
    return issued


def _logins(issued: dict[str, DemoAccess]) -> list[demo_logins.DemoLogin]:
    """What the start page shows (web/demo_logins.py): the desk and the portal sign-ins of each institution."""
    shown = []
    for slug, given in issued.items():
        shown.append(demo_logins.DemoLogin(slug, "circulation desk (staff)", given.desk_username, given.desk_password))
        shown += [
            demo_logins.DemoLogin(slug, "patron (portal)", user, password) for user, password in given.patron_logins
        ]
    return shown


def _setup(tenant: Tenant, role: BuiltinRole = BuiltinRole.TENANT_ADMIN) -> Principal:
    return Principal(PrincipalKind.SYSTEM, uuid.UUID(int=0), tenant.id, BUILTIN_PERMISSIONS[role])


def _patron_logins(session, tenant: Tenant) -> tuple[tuple[str, str], ...]:
    """Portal accounts for the first PORTAL_PATRONS demo patrons, created on first use; new passwords each run."""
    setup = _setup(tenant)
    first = session.scalars(
        select(Patron.id)
        .where(Patron.tenant_id == tenant.id)
        .order_by(Patron.created_at, Patron.id)
        .limit(PORTAL_PATRONS)
    ).all()
    logins = []
    for n, patron_id in enumerate(first, start=1):
        username, password = f"reader{n}", secrets.token_urlsafe(12)
        account = accounts.find_by_username(session, username)
        if account is None:
            account = accounts.create_account(
                session, setup, kind=AccountKind.PATRON, username=username, password=password, patron_id=patron_id
            )
            access.grant_role(session, setup, account.id, BuiltinRole.PATRON)
        else:
            accounts.reset_password(session, setup, account.id, password)
        logins.append((username, password))
    return tuple(logins)


def _privacy_notice(session, tenant: Tenant) -> None:
    """The demo institution's privacy notice, so the portal's consents and registrations have one to name."""
    if notices.in_force(session) is None:
        notices.publish(
            session, _setup(tenant, BuiltinRole.PRIVACY_OFFICER), version="demo-1", notice_text=DEMO_NOTICE,
            material=False,
        )  # fmt: skip


def refuse_real_institutions(db: Database) -> None:
    """The demo is for a local database: it runs without an operator (`bookwarden demo` needs no mapping) and
    prints credentials, so it refuses a database holding any institution of its own."""
    with platform_session(db) as session:
        others = sorted(slug for slug in session.scalars(select(Tenant.slug)) if slug not in INSTITUTIONS)
    if others:
        raise Conflict(
            f"this database holds institutions that are not the demo's ({', '.join(others[:5])}): the demo runs only "
            "on a local database of its own (set BOOKWARDEN_HOME or BOOKWARDEN_DATABASE_NAME to another one)"
        )


def _desk_password(session, tenant: Tenant) -> str:
    """A fresh random password for the demo's circulation-desk account, created on first use."""
    setup = Principal(PrincipalKind.SYSTEM, uuid.UUID(int=0), tenant.id, BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    password = secrets.token_urlsafe(12)
    account = accounts.find_by_username(session, DESK)
    if account is None:
        account = accounts.create_account(session, setup, kind=AccountKind.STAFF, username=DESK, password=password)
        access.grant_role(session, setup, account.id, BuiltinRole.CIRCULATION_STAFF)
    else:
        accounts.reset_password(session, setup, account.id, password)
    return password


def add_patrons(db: Database, tenant: Tenant, rng: random.Random, count: int, first: int = 0) -> None:
    """`count` demo patrons numbered from `first`, with their activity, one transaction each (also used by
    `python -m bench tenant_cost`)."""
    now = datetime.now(UTC)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"seeding {tenant.slug}", total=count)
        for n in range(first, first + count):
            with tenant_session(db, tenant.id) as session:
                _one_patron(session, tenant, rng, n, now)
            progress.advance(task)


def _one_patron(session, tenant: Tenant, rng: random.Random, n: int, now: datetime) -> None:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    patron = records.create(
        session,
        records.PATRONS,
        schemas.PatronCreate(
            name=f"{first} {last}",
            email=f"{first}.{last}.{n}@{tenant.slug}.example".lower(),
            phone=f"+1 555 01{n % 100:02d}",
            postal_address=f"{rng.randint(1, 999)} Library Lane, Springfield",
            institutional_id=f"{tenant.slug[:3].upper()}-{n:06d}",
            affiliation=rng.choice(["student", "faculty", "staff", "community"]),
            birth_date=date(1950, 1, 1) + timedelta(days=rng.randint(0, 365 * 55)),
            barcode=f"2{1000 + n:013d}",
        ),
    )
    for _ in range(rng.randint(1, 4)):
        borrowed = now - timedelta(days=rng.randint(1, 200))
        records.create(
            session,
            records.LOANS,
            schemas.LoanCreate(
                patron_id=patron.id,
                item_id=f"item-{rng.randint(1, 5000)}",
                item_title=rng.choice(TITLES),
                borrowed_at=borrowed,
                due_at=borrowed + timedelta(days=21),
                returned_at=borrowed + timedelta(days=rng.randint(1, 30)) if rng.random() < 0.7 else None,
            ),
        )
    for _ in range(rng.randint(0, 3)):
        records.create(session, records.SEARCHES, schemas.SearchCreate(patron_id=patron.id, query=rng.choice(QUERIES)))
    if rng.random() < 0.4:
        reading = records.create(
            session, records.READING_LISTS, schemas.ReadingListCreate(patron_id=patron.id, title="To read")
        )
        for _ in range(rng.randint(1, 3)):
            records.create(
                session,
                records.READING_LIST_ITEMS,
                schemas.ReadingListItemCreate(
                    list_id=reading.id, item_id=f"item-{rng.randint(1, 5000)}", note="recommended"
                ),
            )
    if rng.random() < 0.3:
        records.create(
            session,
            records.POSTS,
            schemas.PostCreate(patron_id=patron.id, board="book-club", body=f"Has anyone read {rng.choice(TITLES)}?"),
        )
