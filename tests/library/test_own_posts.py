"""A patron deletes their own posts from the portal; nobody else's, and nobody learns which ids exist."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.library import records as library
from bookwarden.library.models import Post
from bookwarden.library.schemas import PostCreate
from tests.privacy.test_consent import _patron, _signed_in_patron

ORIGIN = {"X-Requested-With": "fetch"}


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _post(session, patron_id, body: str) -> uuid.UUID:
    return library.create(session, library.POSTS, PostCreate(patron_id=patron_id, board="book-club", body=body)).id


def test_a_patron_lists_and_deletes_their_own_posts_and_no_one_elses(db, tenant, browser, in_tenant, client_for):
    client, patron_id = _signed_in_patron(browser, in_tenant, tenant)
    with in_tenant(tenant) as session:
        mine = _post(session, patron_id, "Loved it")
        someone = _patron(session, name="Bea Other", email="bea@alpha.example")
        theirs = _post(session, someone, "Not for me")

    listed = client.get("/api/v1/me/posts", headers=ORIGIN)
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()["items"]] == [str(mine)]

    refused = client.delete(f"/api/v1/me/posts/{theirs}", headers=ORIGIN)
    unknown = client.delete(f"/api/v1/me/posts/{uuid.uuid4()}", headers=ORIGIN)
    assert refused.status_code == unknown.status_code == 404
    assert refused.json()["title"] == unknown.json()["title"]  # another's post and no post look alike

    assert client.delete(f"/api/v1/me/posts/{mine}", headers=ORIGIN).status_code == 204
    with tenant_session(db, tenant.id) as session:
        assert set(session.scalars(select(Post.id))) == {theirs}

    # Staff credentials are not a patron's: the portal's own routes refuse them.
    staff = client_for(tenant)
    assert staff.get("/api/v1/me/posts").status_code == 403
