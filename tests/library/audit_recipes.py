"""Audit-coverage recipes of the library area: how to call each of its routes and commands, and the
event each must leave (run by tests/invariants/test_audit_coverage.py)."""

from __future__ import annotations

from uuid import UUID

from bookwarden.audit.events import Action
from bookwarden.core.permissions import (
    BUILTIN_PERMISSIONS,
    LIBRARY_WRITE,
    BuiltinRole,
    Permission,
)
from bookwarden.library import records as library
from tests.e2e.test_cli import cli_env  # noqa: F401 - fixture
from tests.e2e.test_saml import MAPPINGS, _start, admin, idp, key_pairs, sp_metadata  # noqa: F401 - fixtures
from tests.helpers import CHANGES, PATHS
from tests.invariants.audit_coverage import (
    Call,
    World,
    route,
)
from tests.privacy.audit_recipes import _own_patron_browser


def _library_recipes(kind, path: str) -> None:
    collection, one = f"/api/v1/{path}", f"/api/v1/{path}/{{record_id}}"

    def chain(w: World) -> UUID:
        return w.tenant.id

    route("POST", collection)(
        lambda w: Call(w.staff, "POST", collection, kind.action("created"), chain(w), json=w.new_body(kind))
    )
    route("GET", collection)(lambda w: Call(w.staff, "GET", collection, kind.action("listed"), chain(w)))
    route("GET", one)(
        lambda w: Call(w.staff, "GET", f"{collection}/{w.records[kind]['id']}", kind.action("viewed"), chain(w))
    )
    route("PATCH", one)(
        lambda w: Call(
            w.staff,
            "PATCH",
            f"{collection}/{w.records[kind]['id']}",
            kind.action("changed"),
            chain(w),
            json=CHANGES[kind],
        )
    )
    # A patron's deletion is asked first (library/deletion.py): hidden at once, destroyed after a second person.
    deleted = Action.PATRON_DELETION_ASKED if kind is library.PATRONS else kind.action("deleted")
    route("DELETE", one)(
        lambda w: Call(w.staff, "DELETE", f"{collection}/{w.new_record(kind)['id']}", deleted, chain(w))
    )


for _kind, _path in PATHS.items():
    _library_recipes(_kind, _path)


@route("POST", "/api/v1/patrons/lookup")
def _(w):
    barcode = w.records[library.PATRONS]["barcode"]
    body = {"by": "barcode", "value": barcode}
    return Call(w.staff, "POST", "/api/v1/patrons/lookup", Action.PATRON_LOOKED_UP, w.tenant.id, json=body)


# A bulk export of patrons: asked by one privacy officer, approved by another (who also reads accounts,
# as the approval route requires), downloaded by the one who asked.
EXPORTER = BUILTIN_PERMISSIONS[BuiltinRole.PRIVACY_OFFICER]
EXPORTS = "/api/v1/patrons/exports"


@route("POST", EXPORTS)
def _(w):
    return Call(w.client(EXPORTER), "POST", EXPORTS, Action.APPROVAL_REQUESTED, w.tenant.id, json={"format": "csv"})


@route("GET", f"{EXPORTS}/{{approval_id}}")
def _(w):
    w.records  # noqa: B018 - a patron to export
    asker = w.client(EXPORTER)
    asked = asker.post(EXPORTS, json={"format": "jsonl"})
    assert asked.status_code == 202, asked.text
    checker = w.client(EXPORTER | {Permission.ACCOUNTS_READ})
    assert checker.post(f"/api/v1/approvals/{asked.json()['id']}/approve").status_code == 200
    return Call(asker, "GET", f"{EXPORTS}/{asked.json()['id']}", Action.PATRON_EXPORTED, w.tenant.id)


# A patron's deletion: asked by one member of staff, confirmed or undone by another.


def _deletion_asked(w: World) -> str:
    patron_id = w.new_record(library.PATRONS)["id"]
    asked = w.client(LIBRARY_WRITE).delete(f"/api/v1/patrons/{patron_id}")
    assert asked.status_code == 202, asked.text
    return patron_id


@route("POST", "/api/v1/patrons/{patron_id}/deletion/confirm")
def _(w):
    url = f"/api/v1/patrons/{_deletion_asked(w)}/deletion/confirm"
    return Call(w.staff, "POST", url, Action.PATRON_DELETION_CONFIRMED, w.tenant.id)


@route("POST", "/api/v1/patrons/{patron_id}/deletion/undo")
def _(w):
    url = f"/api/v1/patrons/{_deletion_asked(w)}/deletion/undo"
    return Call(w.staff, "POST", url, Action.PATRON_DELETION_UNDONE, w.tenant.id)


# the patron's own posts (the portal)


@route("GET", "/api/v1/me/posts")
def _(w):
    return Call(_own_patron_browser(w), "GET", "/api/v1/me/posts", library.POSTS.action("listed"), w.tenant.id)


@route("DELETE", "/api/v1/me/posts/{post_id}")
def _(w):
    client = _own_patron_browser(w)  # linked to the patron whose post the world made
    url = f"/api/v1/me/posts/{w.records[library.POSTS]['id']}"
    return Call(client, "DELETE", url, library.POSTS.action("deleted"), w.tenant.id)
