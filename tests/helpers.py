"""Shared test data builders: one way to make each record through the real API."""

from __future__ import annotations

import functools
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import uvicorn
from psycopg import sql

from bookwarden.api.cli import server_options
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.core.principal import Principal, PrincipalKind
from bookwarden.db import provision
from bookwarden.db.server import pg_bin
from bookwarden.library import records
from bookwarden.library.routes import PATHS

__all__ = [
    "CHANGES",
    "PATHS",
    "Backup",
    "fresh_address",
    "grant",
    "one_persons_clients",
    "patron_deleted_for_good",
    "populate",
    "restored_dump",
    "security_header_faults",
    "served",
    "stored_hash",
]

_addresses = iter(range(1, 1_000_000))


def fresh_address() -> str:
    """A source address no other test client used: per-address throttles start from zero."""
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def security_header_faults(response, *, https: bool) -> list[str]:
    """What is missing or wrong in `response`'s security headers (an empty list: nothing).

    Every answer: nosniff, no framing (X-Frame-Options and frame-ancestors), no referrer, never stored
    by a cache, HSTS exactly when the platform's public URL is https. JSON and every non-HTML answer
    may load nothing at all; an HTML page only what this site serves, never an inline script.
    """
    headers = response.headers
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    expected = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }
    faults = [f"{where}: {name} is {headers.get(name)!r}" for name, v in expected.items() if headers.get(name) != v]
    hsts = headers.get("strict-transport-security")
    if https and not (hsts or "").startswith("max-age=31536000"):
        faults.append(f"{where}: no Strict-Transport-Security over https ({hsts!r})")
    if not https and hsts is not None:
        faults.append(f"{where}: Strict-Transport-Security although the public URL is http")
    policy = headers.get("content-security-policy")
    if policy is None:
        return [*faults, f"{where}: no Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    if directives.get("frame-ancestors") != ["'none'"]:
        faults.append(f"{where}: frame-ancestors is not 'none' in {policy!r}")
    if not headers.get("content-type", "").startswith("text/html"):
        if policy != "default-src 'none'; frame-ancestors 'none'":
            faults.append(f"{where}: a non-HTML answer's policy is {policy!r}")
        return faults
    # Self-hosted only: 'self', or a script named by its hash; no inline script, no other site, no wildcard.
    scripts = directives.get("script-src", directives.get("default-src"))
    if scripts is None or not all(s in ("'self'", "'none'") or s.startswith("'sha256-") for s in scripts):
        faults.append(f"{where}: scripts are not limited to this site in {policy!r}")
    return faults


# A valid change per kind, used to prove an update of another tenant's record changes nothing.
CHANGES = {
    records.PATRONS: {"name": "Changed Name"},
    records.LOANS: {"item_title": "Changed Title"},
    records.SEARCHES: {"query": "changed query"},
    records.READING_LISTS: {"title": "Changed list"},
    records.READING_LIST_ITEMS: {"note": "changed note"},
    records.POSTS: {"body": "changed body"},
}


def populate(client, n: int = 0) -> dict:
    """One record of every kind for the client's tenant; returns {kind: record json}."""
    made = {}

    def post(kind, body):
        response = client.post(f"/api/v1/{PATHS[kind]}", json=body)
        assert response.status_code == 201, response.text
        made[kind] = response.json()
        return made[kind]

    patron = post(
        records.PATRONS,
        {
            "name": f"Patron {n}",
            "email": f"patron{n}@example.org",
            "phone": "+44 20 7946 0958",
            "postal_address": "1 High Street",
            "institutional_id": f"U-{n:05d}",
            "affiliation": "student",
            "birth_date": "2001-02-03",
            "barcode": f"2{n:013d}",
        },
    )
    post(
        records.LOANS,
        {
            "patron_id": patron["id"],
            "item_id": "item-1",
            "item_title": "Middlemarch",
            "borrowed_at": "2026-01-01T10:00:00Z",
            "due_at": "2026-01-22T10:00:00Z",
        },
    )
    post(records.SEARCHES, {"patron_id": patron["id"], "query": "rare herbals"})
    reading = post(records.READING_LISTS, {"patron_id": patron["id"], "title": "Term reading"})
    post(records.READING_LIST_ITEMS, {"list_id": reading["id"], "item_id": "item-2", "note": "chapter 3"})
    post(records.POSTS, {"patron_id": patron["id"], "board": "book-club", "body": "Loved it"})
    return made


def acting(tenant_id, *permissions) -> Principal:
    """Someone holding exactly `permissions`: a token of the tenant's, or an operator's (tenant_id None)."""
    kind = PrincipalKind.OPERATOR_TOKEN if tenant_id is None else PrincipalKind.API_TOKEN
    return Principal(kind, uuid.uuid4(), tenant_id, frozenset(permissions), owner_id=uuid.uuid4())


def _maker_and_checker(tenant_id):
    """Two administrators (API tokens with the tenant admin's permissions): one asks, the other approves."""
    admin = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
    return tuple(Principal(PrincipalKind.API_TOKEN, uuid.uuid4(), tenant_id, admin) for _ in range(2))


def patron_deleted_for_good(db, tenant_id, asker, checker, patron_id) -> None:
    """A patron deleted as staff do it (library/deletion.py): asked by one, confirmed by another, the grace
    period run out, the hourly job run. `asker` and `checker` are API clients of two people."""
    from sqlalchemy import text

    from bookwarden.db.session import tenant_session
    from bookwarden.library import deletion

    asked = asker.delete(f"/api/v1/patrons/{patron_id}")
    assert asked.status_code == 202, asked.text
    confirmed = checker.post(f"/api/v1/patrons/{patron_id}/deletion/confirm")
    assert confirmed.status_code == 200, confirmed.text
    with tenant_session(db, tenant_id) as session:
        session.execute(
            text("UPDATE patrons SET deletion_due_at = now() - interval '1 second' WHERE id = :id"), {"id": patron_id}
        )
    assert deletion.carry_out_due(db).destroyed >= 1


def one_persons_clients(app, db, tenant_id, role, count: int = 2) -> list:
    """`count` API clients of one person: an active account holding the built-in `role`, each client with
    its own token owned by that account (what maker-checker must see as one person)."""
    import uuid
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from bookwarden.core.permissions import BUILTIN_PERMISSIONS
    from bookwarden.db.session import tenant_session
    from bookwarden.identity.accounts import service as accounts
    from bookwarden.identity.models import AccountKind, AccountStatus
    from bookwarden.identity.tokens import service as tokens

    with tenant_session(db, tenant_id) as session:
        username = f"staff-{uuid.uuid4().hex[:8]}"
        account = accounts.create_account(session, _maker_and_checker(tenant_id)[0], kind=AccountKind.STAFF,
                                          username=username)  # fmt: skip
        account.password_hash, account.status = "x", AccountStatus.ACTIVE
        session.flush()
        grant(session, tenant_id, account.id, role)
        permissions = sorted(BUILTIN_PERMISSIONS[role])
        secrets = [
            tokens.issue_api_token(session, f"token {n}", permissions, timedelta(hours=1), owner_id=account.id)[1]
            for n in range(count)
        ]
    clients = []
    for secret in secrets:
        client = TestClient(app, raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {secret}"
        clients.append(client)
    return clients


def grant(session, tenant_id, account_id, role) -> None:
    """Grant a role as the platform requires: directly, or for a role carrying administrative permissions
    (access/power.py: built-in or custom), asked by one administrator and approved by another (maker-checker)."""
    from bookwarden.access.approvals import service as approvals
    from bookwarden.access.approvals.models import ApprovalRequest
    from bookwarden.identity import roles as access

    maker, checker = _maker_and_checker(tenant_id)
    granted = access.grant_or_ask(session, maker, account_id, str(role))
    if isinstance(granted, ApprovalRequest):
        approvals.approve(session, checker, granted.id)


def define_role(session, tenant_id, name, permissions, description="") -> None:
    """Create a custom role as the platform requires: directly, or for one carrying administrative
    permissions, asked by one administrator and approved by another (maker-checker)."""
    from bookwarden.access.approvals import service as approvals
    from bookwarden.access.approvals.models import ApprovalRequest
    from bookwarden.identity import roles as access

    maker, checker = _maker_and_checker(tenant_id)
    made = access.create_or_ask(session, maker, name, set(permissions), description)
    if isinstance(made, ApprovalRequest):
        approvals.approve(session, checker, made.id)


@dataclass
class Backup:
    dump: str  # the pg_dump as text
    conn: psycopg.Connection  # to the scratch database it was restored into, row security off


@contextmanager
def restored_dump(admin_url, scratch_name: str) -> Iterator[Backup]:
    """pg_dump of the test data database now, restored into a scratch database dropped afterwards."""
    from tests.conftest import TEST_DATABASE

    admin = provision.libpq(admin_url.set(database=TEST_DATABASE))
    dump = subprocess.run(
        [pg_bin("pg_dump"), "--no-owner", "--no-privileges", admin], check=True, capture_output=True, text=True
    ).stdout
    scratch = f"{TEST_DATABASE}_{scratch_name}"
    scratch_url = provision.libpq(admin_url.set(database=scratch))
    with psycopg.connect(provision.libpq(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(scratch)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        subprocess.run(
            [pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", scratch_url],
            input=dump,
            check=True,
            capture_output=True,
            text=True,
        )
        with psycopg.connect(scratch_url) as conn:
            conn.execute("SET row_security = off")
            yield Backup(dump, conn)
    finally:
        with psycopg.connect(provision.libpq(admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))


@functools.cache
def stored_hash(password: str, params) -> str:
    """A real argon2id hash of `password` at `params`, made once per test process and given to every
    throwaway account that signs in with it: a salt shared between test accounts changes nothing any
    test checks, and the sign-in still verifies at full cost (the hash's own parameters)."""
    from bookwarden.identity.passwords import hash_password

    return hash_password(password, params)


def argon2_verifications(monkeypatch) -> list[tuple]:
    """Every argon2 verification made from now on in this test, as the cost parameters of the hash it
    checked. Equal work is what makes two answers take equal time; counting it is deterministic where
    timing two answers on a busy machine is not."""
    from argon2 import PasswordHasher, extract_parameters

    done: list[tuple] = []
    real = PasswordHasher.verify

    def counting(self, hash, password):
        p = extract_parameters(hash.decode() if isinstance(hash, bytes) else hash)
        done.append((p.type, p.version, p.memory_cost, p.time_cost, p.parallelism, p.hash_len, p.salt_len))
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return done


@contextmanager
def served(app, settings) -> Iterator[str]:
    """uvicorn with the options `bookwarden serve` gives it, on an ephemeral port of 127.0.0.1, in a thread."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **server_options(settings)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listening.close()
