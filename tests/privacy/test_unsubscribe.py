"""One-click unsubscribe (RFC 8058): an optional mail reaches a real SMTP server with List-Unsubscribe,
List-Unsubscribe-Post and the same signed link in its body; POST to the link turns the topic off
before it answers, twice changes nothing, GET only shows a page; forged and altered tokens are
refused alike; the outbox refuses optional mail to a patron who said no; service mail carries no
List-Unsubscribe and says why it cannot be unsubscribed from."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from bookwarden.core.errors import InvalidInput
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.crypto.master import MasterKeys
from bookwarden.db.session import tenant_session
from bookwarden.jobs.worker import Worker
from bookwarden.library import records as library
from bookwarden.library.schemas import PatronCreate
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import queue_mail
from bookwarden.privacy.consent import service as consent
from bookwarden.privacy.consent import unsubscribe
from bookwarden.privacy.consent.models import ConsentMethod, ConsentRecord
from bookwarden.privacy.consent.service import Channel, Choice, Topic
from bookwarden.privacy.consent.unsubscribe import InvalidUnsubscribeLink, OptedOut
from tests.e2e.test_notify import smtp_server  # noqa: F401 - the real aiosmtpd server fixture
from tests.privacy.test_complaints import _principal

PUBLIC = "https://library.alpha.example"
DESK = frozenset(BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
NEWSLETTER = {"message": "Our reading room reopens on Monday.", "institution": "Alpha University"}


@pytest.fixture(autouse=True)
def public_url(monkeypatch):
    monkeypatch.setenv("BOOKWARDEN_PUBLIC_URL", PUBLIC)


def _subscribed_patron(session, *, topics=(Topic.NEWSLETTERS,), email="zoe@alpha.example") -> uuid.UUID:
    patron_id = library.create(session, library.PATRONS, PatronCreate(name="Zoe Reader", email=email)).id
    consent.set_preferences(
        session,
        _principal(session.tenant_id, DESK),
        patron_id,
        [Choice(Channel.EMAIL, topic, True) for topic in topics],
        method=ConsentMethod.FORM,
        notice_version="2026-03",
    )
    return patron_id


def _queue_newsletter(session, patron_id) -> OutboxMessage:
    return unsubscribe.queue_optional_mail(
        session,
        patron_id,
        Topic.NEWSLETTERS,
        subject="Alpha Library news",
        template="newsletter.txt",
        context=NEWSLETTER,
    )


def _token_of(url: str) -> str:
    return url.rpartition(unsubscribe.PATH)[2]


# -- over real SMTP, then the link -------------------------------------------------------------------


def test_an_optional_mail_arrives_with_one_click_headers_and_its_link_unsubscribes_at_once(
    committed_db,
    committed_tenant,
    smtp_server,  # noqa: F811
    settings,
):
    from bookwarden.api.app import create_app

    app = create_app(committed_db, settings)  # real commits: the answer comes after the change is durable
    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        patron_id = _subscribed_patron(session, topics=(Topic.NEWSLETTERS, Topic.EVENTS))
        _queue_newsletter(session, patron_id)
    assert Worker(committed_db, "t").run_one() is True

    [mail] = smtp_server.messages
    got = mail.message
    header = got["List-Unsubscribe"]
    assert header.startswith(f"<{PUBLIC}/api/v1/unsubscribe/") and header.endswith(">")
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = header[1:-1]
    body = got.get_content()
    assert link in body and "Our reading room reopens on Monday." in body
    assert "to stop receiving newsletters, open this link" in body
    assert mail.recipients == ["zoe@alpha.example"]

    # What a mail client does for one-click: POST the RFC 8058 body to the link.
    client = TestClient(app, base_url=PUBLIC, raise_server_exceptions=False)
    path = link.removeprefix(PUBLIC)
    form = {"content-type": "application/x-www-form-urlencoded"}
    one_click = {"content": "List-Unsubscribe=One-Click", "headers": form}
    first = client.post(path, **one_click)
    # Honoured before the answer: a fresh transaction sees it off the moment the response is back.
    with tenant_session(committed_db, tenant_id) as session:
        assert not consent.is_subscribed(session, patron_id, Channel.EMAIL, Topic.NEWSLETTERS)
        assert consent.is_subscribed(session, patron_id, Channel.EMAIL, Topic.EVENTS)  # only that topic
    second = client.post(path, **one_click)

    assert first.status_code == second.status_code == 200, first.text
    assert "no longer receive newsletters" in first.text
    with tenant_session(committed_db, tenant_id) as session:
        withdrawals = session.scalars(
            select(ConsentRecord).where(ConsentRecord.given.is_(False)).order_by(ConsentRecord.seq)
        ).all()
        events = (
            session.execute(text("SELECT details FROM audit_events WHERE action = 'privacy.unsubscribed' ORDER BY seq"))
            .scalars()
            .all()
        )
        # And the outbox now refuses the next newsletter to this patron.
        with pytest.raises(OptedOut):
            _queue_newsletter(session, patron_id)
    assert [(w.purpose, w.method, w.recorded_by) for w in withdrawals] == [
        ("communication:email:newsletters", "unsubscribe_link", None)
    ]
    assert [e["changed"] for e in events] == [True, False]  # idempotent: the second click changed nothing


def test_a_mail_queued_before_an_unsubscribe_is_not_sent_after_it(
    committed_db,
    committed_tenant,
    smtp_server,  # noqa: F811
):
    from bookwarden.notify.models import OutboxStatus

    tenant_id = committed_tenant()
    with tenant_session(committed_db, tenant_id) as session:
        patron_id = _subscribed_patron(session)
        message = _queue_newsletter(session, patron_id)
    unsubscribe.unsubscribe(committed_db, _token_of(message.headers["List-Unsubscribe"][1:-1]))

    assert Worker(committed_db, "t").run_one() is True

    assert smtp_server.messages == []
    with tenant_session(committed_db, tenant_id) as session:
        settled = session.get(OutboxMessage, (tenant_id, message.id))
        assert (settled.status, settled.attempts) == (OutboxStatus.FAILED, 0)
        assert "unsubscribed" in settled.last_error


def test_opening_the_link_shows_a_page_and_unsubscribes_nobody(db, tenant, in_tenant, app):
    with in_tenant(tenant) as session:
        patron_id = _subscribed_patron(session)
        message = _queue_newsletter(session, patron_id)
        link = message.headers["List-Unsubscribe"][1:-1]
    client = TestClient(app, base_url=PUBLIC, raise_server_exceptions=False)

    page = client.get(link.removeprefix(PUBLIC))

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.text and "Alpha University" in page.text
    assert page.headers["cache-control"] == "no-store"
    with in_tenant(tenant) as session:
        assert consent.is_subscribed(session, patron_id, Channel.EMAIL, Topic.NEWSLETTERS)
        viewed = session.execute(text("SELECT count(*) FROM audit_events WHERE action = 'privacy.unsubscribe.viewed'"))
        assert viewed.scalar_one() == 1


# -- tokens ------------------------------------------------------------------------------------------


def test_a_token_names_tenant_patron_and_topic_and_any_change_is_refused_alike(db, tenant, app):
    patron_id = uuid.uuid4()
    token = unsubscribe.sign(db.master, tenant.id, patron_id, Topic.SURVEYS)
    claims = unsubscribe.verify(db.master, token)
    assert (claims.tenant_id, claims.patron_id, claims.topic) == (tenant.id, patron_id, Topic.SURVEYS)

    payload, _, mac = token.partition(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    other_topic = unsubscribe.sign(db.master, tenant.id, patron_id, Topic.EVENTS).partition(".")[0]
    forged = [
        f"{flipped}.{mac}",  # a changed claim
        f"{other_topic}.{mac}",  # another topic under this MAC
        f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # a changed MAC
        f"{payload}.{'A' * 43}",
        "not-a-token",
        "",
        f"{payload}{mac}",
    ]
    for bad in forged:
        with pytest.raises(InvalidUnsubscribeLink):
            unsubscribe.verify(db.master, bad)

    client = TestClient(app, base_url=PUBLIC, raise_server_exceptions=False)
    answers = [client.post(f"/api/v1/unsubscribe/{bad}") for bad in forged[:4]]
    # The same answer whatever is wrong: nothing says which part failed or whether the patron exists.
    assert {(a.status_code, a.json()["detail"]) for a in answers} == {(404, InvalidUnsubscribeLink().detail)}
    # A genuine link for a patron who does not exist answers like a real one and records nothing.
    assert client.post(f"/api/v1/unsubscribe/{token}").status_code == 200


def test_another_master_key_cannot_sign_but_a_rotated_one_still_verifies(db, tenant):
    from bookwarden.crypto.aead import new_key
    from bookwarden.crypto.master import key_id

    stranger_key = new_key()
    stranger = MasterKeys(key_id(stranger_key), {key_id(stranger_key): stranger_key})
    token = unsubscribe.sign(stranger, tenant.id, uuid.uuid4(), Topic.NEWSLETTERS)
    with pytest.raises(InvalidUnsubscribeLink):
        unsubscribe.verify(db.master, token)
    # After a rotation the old key stays loaded beside the new one: links already mailed keep working.
    rotated = MasterKeys(stranger.current_id, {**db.master.keys, **stranger.keys})
    old_link = unsubscribe.sign(db.master, tenant.id, uuid.uuid4(), Topic.NEWSLETTERS)
    assert unsubscribe.verify(rotated, old_link).topic is Topic.NEWSLETTERS


def test_every_token_costs_a_full_mac_and_a_constant_time_comparison_per_key(db, tenant, monkeypatch):
    """Whatever the token looks like (genuine, forged, malformed, empty), verification derives the MAC with
    every loaded master key and compares it with hmac.compare_digest: nothing returns early on a bad shape."""
    from bookwarden.crypto.aead import new_key
    from bookwarden.crypto.master import key_id

    spare = new_key()
    master = MasterKeys(db.master.current_id, {**db.master.keys, key_id(spare): spare})
    token = unsubscribe.sign(master, tenant.id, uuid.uuid4(), Topic.NEWSLETTERS)
    compared: list[int] = []
    real = unsubscribe.hmac.compare_digest
    monkeypatch.setattr(unsubscribe.hmac, "compare_digest", lambda a, b: compared.append(len(a)) or real(a, b))

    for candidate in (token, f"{token.partition('.')[0]}.{'A' * 43}", "not-a-token", "", "a.b.c"):
        compared.clear()
        with contextlib.suppress(InvalidUnsubscribeLink):
            unsubscribe.verify(master, candidate)
        assert compared == [32, 32], candidate  # one full-length comparison per key, every time


# -- the outbox refuses what must not go -----------------------------------------------------------------


def test_the_outbox_refuses_optional_mail_to_a_patron_who_never_agreed_or_withdrew(db, tenant, in_tenant):
    with in_tenant(tenant) as session:
        never = library.create(session, library.PATRONS, PatronCreate(name="No", email="no@alpha.example")).id
        with pytest.raises(OptedOut, match="has not agreed"):
            _queue_newsletter(session, never)
        # Not even a caller building the headers itself gets past the outbox.
        url = unsubscribe.link(PUBLIC, unsubscribe.sign(db.master, tenant.id, never, Topic.NEWSLETTERS))
        with pytest.raises(OptedOut):
            queue_mail(
                session,
                to="no@alpha.example",
                subject="News",
                template="generic.txt",
                context={"recipient_name": "No", "message": url, "institution": "Alpha"},
                category=MailCategory.OPTIONAL,
                headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            )
        assert session.scalar(select(OutboxMessage.id)) is None


@pytest.mark.parametrize(
    "problem",
    ["link not ours", "link of another institution", "link missing from the body", "another address"],
)
def test_the_outbox_refuses_optional_mail_without_the_platforms_own_link(db, tenant, other_tenant, in_tenant, problem):
    with in_tenant(tenant) as session:
        patron_id = _subscribed_patron(session)
        owner = other_tenant.id if problem == "link of another institution" else tenant.id
        token = unsubscribe.sign(db.master, owner, patron_id, Topic.NEWSLETTERS)
        url = unsubscribe.link(PUBLIC, token if problem != "link not ours" else "opaque-token-1")
        message = "no link here" if problem == "link missing from the body" else url
        with pytest.raises(InvalidInput):
            queue_mail(
                session,
                to="someone.else@alpha.example" if problem == "another address" else "zoe@alpha.example",
                subject="News",
                template="generic.txt",
                context={"recipient_name": "Zoe", "message": message, "institution": "Alpha"},
                category=MailCategory.OPTIONAL,
                headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            )


def test_service_mail_has_no_unsubscribe_and_says_why(db, tenant, in_tenant):
    from bookwarden.notify.service import open_mail

    with in_tenant(tenant) as session:
        for category in (MailCategory.SERVICE, MailCategory.SECURITY):
            message = queue_mail(
                session,
                to="zoe@alpha.example",
                subject="Your loan is due",
                template="generic.txt",
                context={"recipient_name": "Zoe", "message": "Return it by Friday.", "institution": "Alpha"},
                category=category,
            )
            body = open_mail(session, message).body
            assert "List-Unsubscribe" not in message.headers
            assert "cannot be unsubscribed from, because" in body, category
        with pytest.raises(InvalidInput, match="service message"):
            unsubscribe.queue_optional_mail(
                session, uuid.uuid4(), Topic.DUE_DATE_NOTICES, subject="s", template="generic.txt", context={}
            )


def test_optional_mail_needs_an_https_public_url(db, tenant, in_tenant, monkeypatch):
    monkeypatch.setenv("BOOKWARDEN_PUBLIC_URL", "http://127.0.0.1:8000")
    with in_tenant(tenant) as session:
        patron_id = _subscribed_patron(session)
        with pytest.raises(InvalidInput, match="https"):
            _queue_newsletter(session, patron_id)


# -- mailings: the platform's optional mail -----------------------------------------------------------


def test_a_mailing_goes_only_to_patrons_who_agreed_each_with_its_own_link(client_for, tenant, in_tenant):
    from bookwarden.core.permissions import Permission
    from bookwarden.notify.service import open_mail

    with in_tenant(tenant) as session:
        agreed = _subscribed_patron(session, email="yes@alpha.example")
        withdrew = _subscribed_patron(session, email="no-more@alpha.example")
        _subscribed_patron(session, topics=(Topic.EVENTS,), email="events-only@alpha.example")
        library.create(session, library.PATRONS, PatronCreate(name="Never Asked", email="never@alpha.example"))
        _subscribed_patron(session, email=None)  # agreed at the desk, but no address on file
        consent.withdraw(session, withdrew, Channel.EMAIL, Topic.NEWSLETTERS, ConsentMethod.UNSUBSCRIBE_LINK)
    sender = client_for(tenant, permissions={Permission.MAILINGS_SEND})

    response = sender.post(
        "/api/v1/privacy/mailings",
        json={"topic": "newsletters", "subject": "Alpha Library news", "message": "The reading room reopens."},
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"topic": "newsletters", "queued": 1, "without_address": 1, "objected": 0}
    with in_tenant(tenant) as session:
        [message] = session.scalars(select(OutboxMessage)).all()
        mail = open_mail(session, message)
        claims = unsubscribe.verify(db_master(session), _token_of(message.headers["List-Unsubscribe"][1:-1]))
    assert mail.to == "yes@alpha.example" and "The reading room reopens." in mail.body
    assert (claims.patron_id, claims.topic) == (agreed, Topic.NEWSLETTERS)
    assert message.headers["List-Unsubscribe"][1:-1] in mail.body
    # A service topic is no mailing; and sending needs mailings.send.
    refused = sender.post("/api/v1/privacy/mailings", json={"topic": "security", "subject": "x", "message": "y"})
    assert refused.status_code == 422
    other = client_for(tenant, permissions={Permission.PRIVACY_PREFERENCES_MANAGE})
    assert (
        other.post("/api/v1/privacy/mailings", json={"topic": "events", "subject": "x", "message": "y"}).status_code
        == 403
    )


def db_master(session):
    return session.keyring.master
