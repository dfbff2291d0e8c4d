"""The patron portal's pages keep the API's controls: one's own data only, the patron's own permission,
the age gate before anything is kept."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bookwarden.db.session import tenant_session
from bookwarden.identity import passwords
from bookwarden.library.models import Patron, Post
from tests.e2e.people import PASSWORD, patron, publish_notice, staff
from tests.helpers import fresh_address
from tests.web.test_foundation import TOKEN

POST_ACTION = re.compile(r'action="/portal/posts/([0-9a-f-]+)/delete"')


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def _signed_in(app, slug: str, username: str) -> TestClient:
    client = TestClient(app, base_url="https://testserver", client=(fresh_address(), 1), raise_server_exceptions=False)
    token = TOKEN.search(client.get("/signin").text).group(1)
    fields = {"csrf_token": token, "institution": slug, "username": username, "password": PASSWORD}
    assert client.post("/signin", data=fields, follow_redirects=False).status_code == 303
    return client


def _token(client, path="/portal") -> str:
    return TOKEN.search(client.get(path).text).group(1)


def test_my_data_shows_my_record_and_nobody_elses(app, db, tenant):
    patron(db, tenant.id, "ada", name="Ada Reader")
    patron(db, tenant.id, "ben", name="Ben Other")
    page = _signed_in(app, tenant.slug, "ada").get("/portal")
    assert page.status_code == 200 and "Ada Reader" in page.text and "Ben Other" not in page.text


def test_another_patrons_post_cannot_be_deleted(app, db, tenant):
    patron(db, tenant.id, "ada")
    patron(db, tenant.id, "ben")
    ben = _signed_in(app, tenant.slug, "ben")
    [bens_post] = POST_ACTION.findall(ben.get("/portal/posts").text)
    ada = _signed_in(app, tenant.slug, "ada")
    answer = ada.post(f"/portal/posts/{bens_post}/delete", data={"csrf_token": _token(ada)})
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    with tenant_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 2
    mine = ada.post(f"/portal/posts/{POST_ACTION.findall(ada.get('/portal/posts').text)[0]}/delete",
                    data={"csrf_token": _token(ada)})  # fmt: skip
    assert mine.status_code == 200 and "Your post is deleted" in mine.text


def test_staff_without_the_patrons_permission_get_a_refusal_page(app, db, tenant):
    staff(db, tenant.id, "desk")
    answer = _signed_in(app, tenant.slug, "desk").get("/portal")
    assert answer.status_code == 403 and "self.service" in answer.text


def test_a_reader_who_is_not_signed_in_is_sent_to_sign_in_and_back(app):
    client = TestClient(app, base_url="https://testserver", client=(fresh_address(), 1))
    answer = client.get("/portal/requests", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/signin?next=/portal/requests"


def test_a_child_under_the_age_gate_is_refused_and_nothing_is_kept(app, db, tenant, issue_token):
    from datetime import date

    from bookwarden.core.permissions import Permission

    admin = TestClient(
        app, headers={"Authorization": f"Bearer {issue_token(tenant, permissions={Permission.POLICY_MANAGE})}"}
    )
    assert admin.put("/api/v1/self-registration/settings", json={"enabled": True, "timezone": "UTC"}).status_code == 200
    publish_notice(db, tenant.id)
    visitor = TestClient(app, base_url="https://testserver", client=(fresh_address(), 1))
    born = date(date.today().year - 10, 1, 1).isoformat()
    fields = {"institution": tenant.slug, "name": "Tim Young", "email": "tim@example.org", "birth_date": born}
    answer = visitor.post("/register", data={"csrf_token": _token(visitor, "/register"), **fields})
    assert answer.status_code == 403 and "cannot register themselves" in answer.text
    assert "Tim Young" not in answer.text and "tim@example.org" not in answer.text
    with tenant_session(db, tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(Patron)) == 0

    grown = {**fields, "name": "Sam Reader", "email": "sam@example.org", "birth_date": "1990-05-01"}
    answer = visitor.post("/register", data={"csrf_token": _token(visitor, "/register"), **grown})
    assert answer.status_code == 200 and "Check your mail" in answer.text
