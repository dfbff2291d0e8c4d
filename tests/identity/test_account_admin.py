"""Administering accounts, and the one-time links that let holders set their own passwords.

An administrator invites; the holder reads the mail (here: the outbox row, decrypted), follows the
link and chooses a password; a forgotten password is reset through a link that only the
holder's mailbox receives. Real PostgreSQL, real argon2id at OWASP's floor (see `fast_hashing`).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bookwarden.access.roles import notices
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.crypto.aead import new_key
from bookwarden.crypto.master import MasterKeys
from bookwarden.identity import links, passwords, throttle
from bookwarden.identity.accounts import service as accounts
from bookwarden.identity.links import LinkClaims, LinkPurpose
from bookwarden.identity.models import Account, AccountStatus
from bookwarden.notify.models import MailCategory, OutboxMessage
from bookwarden.notify.service import open_mail

ADMIN = BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN]
PASSWORD = "violet tractor mango 42 harbour"
NEW_PASSWORD = "quartz lantern pebble 77 orchard"
INVALID_LINK = "urn:bookwarden:problem:invalid-link"
TOKEN = re.compile(r"#token=([A-Za-z0-9_.-]+)")


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch):
    """Verify at OWASP's floor in these tests only; sign-in reads DEFAULT at call time."""
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


@pytest.fixture
def admin(client_for, tenant):
    return client_for(tenant, permissions=ADMIN)


def _invite(admin, username: str, email: str | None = None, **fields) -> dict:
    body = {"kind": "staff", "username": username, "email": email or f"{username}@alpha.example.org", **fields}
    response = admin.post("/api/v1/accounts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _mails(in_tenant, tenant, to: str, category: MailCategory = MailCategory.SERVICE) -> list:
    with in_tenant(tenant) as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.category == category)).all()
        return [mail for mail in (open_mail(session, row) for row in rows) if mail.to == to]


def _link(in_tenant, tenant, to: str, subject_part: str) -> str:
    """The token of the one mail to `to` whose subject says `subject_part`."""
    [mail] = [m for m in _mails(in_tenant, tenant, to) if subject_part in m.subject]
    return TOKEN.search(mail.body).group(1)


def _login(client, username: str, password: str, institution: str = "alpha"):
    return client.post(
        "/api/v1/auth/login", json={"institution": institution, "username": username, "password": password}
    )


def _active(admin, browser, in_tenant, tenant, username: str) -> dict:
    """An account invited by the admin whose holder accepted with PASSWORD."""
    account = _invite(admin, username)
    token = _link(in_tenant, tenant, account["email"], "invitation")
    assert _accept(browser(), token, PASSWORD).status_code == 204
    return account


def _accept(client, token: str, password: str):
    return client.post("/api/v1/auth/accept-invitation", json={"token": token, "password": password})


def _reset(client, token: str, password: str):
    return client.post("/api/v1/auth/reset-password", json={"token": token, "password": password})


def _ask_reset(client, username: str, institution: str = "alpha"):
    return client.post("/api/v1/auth/password-reset", json={"institution": institution, "username": username})


def _refused_as_invalid_link(response) -> dict:
    assert response.status_code == 401, response.text
    problem = response.json()
    assert problem["type"] == INVALID_LINK
    return {k: problem[k] for k in ("type", "title", "status", "detail")}


def _db_account(in_tenant, tenant, account_id) -> Account:
    with in_tenant(tenant) as session:
        return session.get(Account, (tenant.id, uuid.UUID(account_id)))


# -- invitations ---------------------------------------------------------------------------


def test_an_invited_holder_chooses_a_password_under_the_policy_and_signs_in(admin, browser, in_tenant, tenant):
    account = _invite(admin, "ann.lee", display_name="Ann Lee")
    assert account["status"] == "invited" and account["roles"] == []
    assert (account["username"], account["email"], account["display_name"]) == (
        "ann.lee",
        "ann.lee@alpha.example.org",
        "Ann Lee",
    )

    [mail] = _mails(in_tenant, tenant, "ann.lee@alpha.example.org")
    assert mail.subject == "[Alpha University] your invitation"
    for told in ("Ann Lee", "an administrator of Alpha University", "username:    ann.lee", "alpha", "ignore"):
        assert told in mail.body, told
    assert "http://127.0.0.1:8000/accept-invitation#token=" in mail.body
    token = TOKEN.search(mail.body).group(1)

    # A staff account needs 12 characters at least; the refusal names the rule and sets nothing.
    weak = _accept(browser(), token, "short pw")
    assert weak.status_code == 422
    assert weak.json()["type"] == "urn:bookwarden:problem:password-rejected"
    assert weak.json()["errors"] == [{"field": "password", "message": "too_short"}]
    assert "at least 12 characters" in weak.json()["detail"]
    assert _db_account(in_tenant, tenant, account["id"]).status is AccountStatus.INVITED

    assert _accept(browser(), token, PASSWORD).status_code == 204
    assert admin.get(f"/api/v1/accounts/{account['id']}").json()["status"] == "active"
    signed_in = _login(browser(), "ann.lee", PASSWORD)
    assert signed_in.status_code == 200 and signed_in.json()["account_id"] == account["id"]


def test_the_invitation_link_base_comes_from_the_public_url_setting(admin, in_tenant, tenant, monkeypatch):
    monkeypatch.setenv("BOOKWARDEN_PUBLIC_URL", "https://books.alpha.example.org/")
    _invite(admin, "bo")
    [mail] = _mails(in_tenant, tenant, "bo@alpha.example.org")
    assert "https://books.alpha.example.org/accept-invitation#token=" in mail.body


def test_an_invitation_link_works_once(admin, browser, in_tenant, tenant):
    account = _invite(admin, "cy")
    token = _link(in_tenant, tenant, account["email"], "invitation")
    assert _accept(browser(), token, PASSWORD).status_code == 204
    _refused_as_invalid_link(_accept(browser(), token, NEW_PASSWORD))
    assert _login(browser(), "cy", NEW_PASSWORD).status_code == 401
    assert _login(browser(), "cy", PASSWORD).status_code == 200


def test_every_unusable_link_gets_the_same_answer(admin, browser, in_tenant, tenant, db):
    account = _invite(admin, "dee")
    token = _link(in_tenant, tenant, account["email"], "invitation")
    payload, signature = token.split(".")

    def flipped(text: str, at: int) -> str:
        return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]

    with in_tenant(tenant) as session:
        row = accounts.get_account(session, uuid.UUID(account["id"]))
        expired = links.issue(db.master, LinkPurpose.INVITE, tenant.id, row, now=time.time() - 72 * 3600 - 1).token
    unusable = [
        f"{flipped(payload, 5)}.{signature}",
        f"{payload}.{flipped(signature, 0)}",
        f"{payload}.{flipped(signature, len(signature) - 1)}",  # the last character's spare bits
        f"{payload}.{signature}=",
        f"{payload}{signature}",
        "not a link",
        ".",
        expired,
    ]
    answers = [_refused_as_invalid_link(_accept(browser(), t, PASSWORD)) for t in unusable]
    assert all(answer == answers[0] for answer in answers)
    # None of them touched the account: the genuine link still works.
    assert _accept(browser(), token, PASSWORD).status_code == 204


def test_claims_signed_under_any_other_key_are_refused(admin, browser, db, in_tenant, tenant):
    account = _invite(admin, "eve")
    token = _link(in_tenant, tenant, account["email"], "invitation")
    claims = links.verify(db.master, token, LinkPurpose.INVITE)
    stranger = MasterKeys(current_id="x", keys={"x": new_key()})
    # The genuine claims, and the same with a later expiry: only our master key makes a link.
    later = LinkClaims(claims.purpose, claims.tenant_id, claims.account_id, claims.expires + 3600, claims.state)
    for forged in (links.sign(stranger, claims), links.sign(stranger, later)):
        _refused_as_invalid_link(_accept(browser(), forged, PASSWORD))
    assert _accept(browser(), token, PASSWORD).status_code == 204


def test_a_reset_link_is_no_invitation_and_an_invitation_no_reset_link(admin, browser, db, in_tenant, tenant):
    invited = _invite(admin, "fay")
    invitation = _link(in_tenant, tenant, invited["email"], "invitation")
    _refused_as_invalid_link(_reset(browser(), invitation, NEW_PASSWORD))

    active = _active(admin, browser, in_tenant, tenant, "gus")
    assert admin.post(f"/api/v1/accounts/{active['id']}/password-reset").status_code == 202
    reset = _link(in_tenant, tenant, active["email"], "reset")
    _refused_as_invalid_link(_accept(browser(), reset, NEW_PASSWORD))
    # Even a reset link made for an invited account is no invitation: the purpose is signed in.
    with in_tenant(tenant) as session:
        row = accounts.get_account(session, uuid.UUID(invited["id"]))
        reset_for_invited = links.issue(db.master, LinkPurpose.RESET, tenant.id, row).token
    _refused_as_invalid_link(_accept(browser(), reset_for_invited, NEW_PASSWORD))
    _refused_as_invalid_link(_reset(browser(), reset_for_invited, NEW_PASSWORD))
    assert _reset(browser(), reset, NEW_PASSWORD).status_code == 204


def test_an_expired_reset_link_is_refused(admin, browser, db, in_tenant, tenant):
    account = _active(admin, browser, in_tenant, tenant, "hal")
    with in_tenant(tenant) as session:
        row = accounts.get_account(session, uuid.UUID(account["id"]))
        hour_old = links.issue(db.master, LinkPurpose.RESET, tenant.id, row, now=time.time() - 3601).token
        fresh = links.issue(db.master, LinkPurpose.RESET, tenant.id, row, now=time.time() - 3500).token
    _refused_as_invalid_link(_reset(browser(), hour_old, NEW_PASSWORD))
    assert _reset(browser(), fresh, NEW_PASSWORD).status_code == 204


def test_invitations_are_re_sent_only_to_invited_accounts(admin, browser, in_tenant, tenant):
    invited = _invite(admin, "ida")
    again = admin.post(f"/api/v1/accounts/{invited['id']}/invitation")
    assert again.status_code == 202 and set(again.json()) == {"expires_at"}  # the link goes by mail only
    one, other = (TOKEN.search(m.body).group(1) for m in _mails(in_tenant, tenant, invited["email"]))
    assert _accept(browser(), one, PASSWORD).status_code == 204
    _refused_as_invalid_link(_accept(browser(), other, PASSWORD))  # using one used up both

    refused = admin.post(f"/api/v1/accounts/{invited['id']}/invitation")
    assert refused.status_code == 409 and "password reset" in refused.json()["detail"]
    assert admin.post(f"/api/v1/accounts/{invited['id']}/password-reset").status_code == 202


# -- password resets -----------------------------------------------------------------------


def test_asking_for_a_reset_answers_alike_whether_or_not_the_account_exists(admin, browser, in_tenant, tenant):
    known = _active(admin, browser, in_tenant, tenant, "jo")
    invited = _invite(admin, "kit")
    before = _mails(in_tenant, tenant, known["email"])

    answers = [
        _ask_reset(browser(), "jo"),
        _ask_reset(browser(), "nobody-here"),
        _ask_reset(browser(), "kit"),  # invited: its invitation is what it needs
        _ask_reset(browser(), "jo", institution="no-such-institution"),
        _ask_reset(browser(), "jo", institution="Not A Slug!"),
    ]
    assert {a.status_code for a in answers} == {202}
    assert all(a.json() == answers[0].json() for a in answers)
    assert all(a.headers["content-type"] == answers[0].headers["content-type"] for a in answers)

    [reset_mail] = [m for m in _mails(in_tenant, tenant, known["email"]) if m not in before]
    assert reset_mail.subject == "[Alpha University] reset your password"
    for told in ("the sign-in page", "jo", "ignore", "http://127.0.0.1:8000/reset-password#token="):
        assert told in reset_mail.body, told
    assert [m for m in _mails(in_tenant, tenant, invited["email"]) if "reset" in m.subject] == []
    with in_tenant(tenant) as session:
        service_mail = session.scalars(select(OutboxMessage).where(OutboxMessage.category == MailCategory.SERVICE))
        # Two invitations and one reset link: nothing was queued for anyone else.
        assert len(service_mail.all()) == 3


def test_the_reset_link_sets_a_new_password_ends_sessions_and_tells_security_contacts(
    admin, browser, in_tenant, tenant
):
    with in_tenant(tenant) as session:
        notices.add_security_contact(session, "soc@alpha.example.org")
    account = _active(admin, browser, in_tenant, tenant, "lou")
    holder = browser()
    assert _login(holder, "lou", PASSWORD).status_code == 200
    assert holder.get("/api/v1/auth/me").status_code == 200
    assert _login(browser(), "lou", "not the password at all").status_code == 401
    with in_tenant(tenant) as session:
        assert throttle.account_failures(session, uuid.UUID(account["id"])) == 1

    assert _ask_reset(browser(), "lou").status_code == 202
    token = _link(in_tenant, tenant, account["email"], "reset")
    reused = _reset(browser(), token, PASSWORD)  # the current password is in the history
    assert reused.status_code == 422 and reused.json()["errors"][0]["message"] == "reused"
    assert _reset(browser(), token, NEW_PASSWORD).status_code == 204

    assert _login(browser(), "lou", PASSWORD).status_code == 401
    assert holder.get("/api/v1/auth/me").status_code == 401  # the session from before has ended
    assert _login(browser(), "lou", NEW_PASSWORD).status_code == 200
    with in_tenant(tenant) as session:
        assert throttle.account_failures(session, uuid.UUID(account["id"])) == 0
    [notice] = [
        m
        for m in _mails(in_tenant, tenant, "soc@alpha.example.org", MailCategory.SECURITY)
        if "password reset" in m.subject
    ]
    assert f"account {account['id']}" in notice.body
    assert f"Changed by: account {account['id']}" in notice.body  # the holder, not an administrator
    _refused_as_invalid_link(_reset(browser(), token, "a third passphrase entirely 9"))


def test_an_admin_has_a_reset_link_mailed_and_never_sees_it(admin, browser, in_tenant, tenant):
    account = _active(admin, browser, in_tenant, tenant, "max")
    sent = admin.post(f"/api/v1/accounts/{account['id']}/password-reset")
    assert sent.status_code == 202 and set(sent.json()) == {"expires_at"}
    [mail] = [m for m in _mails(in_tenant, tenant, account["email"]) if "reset" in m.subject]
    assert "an administrator of Alpha University" in mail.body
    token = TOKEN.search(mail.body).group(1)
    assert token not in sent.text
    assert _reset(browser(), token, NEW_PASSWORD).status_code == 204
    assert _login(browser(), "max", NEW_PASSWORD).status_code == 200


def test_reset_requests_are_rate_limited_per_address(admin, browser, in_tenant, tenant):
    _active(admin, browser, in_tenant, tenant, "ned")
    asker = browser()
    answers = [
        _ask_reset(asker, "ned" if n % 2 else "nobody").status_code for n in range(throttle.ADDRESS_FREE_FAILURES)
    ]
    assert answers == [202] * throttle.ADDRESS_FREE_FAILURES
    refused = _ask_reset(asker, "ned")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.json()["type"] == "urn:bookwarden:problem:too-many-attempts"
    assert _ask_reset(browser(), "ned").status_code == 202  # another address is not held up
    assert _login(asker, "ned", PASSWORD).status_code == 200  # nor are the asker's sign-ins


def test_a_disabled_account_cannot_use_or_ask_for_a_link(admin, browser, in_tenant, tenant):
    account = _active(admin, browser, in_tenant, tenant, "olive")
    assert admin.post(f"/api/v1/accounts/{account['id']}/password-reset").status_code == 202
    token = _link(in_tenant, tenant, account["email"], "reset")
    assert admin.post(f"/api/v1/accounts/{account['id']}/disable").status_code == 200
    _refused_as_invalid_link(_reset(browser(), token, NEW_PASSWORD))
    before = len(_mails(in_tenant, tenant, account["email"]))
    assert _ask_reset(browser(), "olive").status_code == 202
    assert len(_mails(in_tenant, tenant, account["email"])) == before
    assert admin.post(f"/api/v1/accounts/{account['id']}/password-reset").status_code == 409


# -- administration ------------------------------------------------------------------------


def test_disabling_ends_the_accounts_sessions_and_enabling_lets_it_sign_in_again(admin, browser, in_tenant, tenant):
    account = _active(admin, browser, in_tenant, tenant, "pia")
    holder = browser()
    assert _login(holder, "pia", PASSWORD).status_code == 200
    disabled = admin.post(f"/api/v1/accounts/{account['id']}/disable")
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert holder.get("/api/v1/auth/me").status_code == 401
    assert _login(browser(), "pia", PASSWORD).status_code == 401
    with in_tenant(tenant) as session:
        live = session.execute(text("SELECT count(*) FROM sessions WHERE revoked_at IS NULL")).scalar()
    assert live == 0
    assert admin.post(f"/api/v1/accounts/{account['id']}/enable").json()["status"] == "active"
    assert _login(browser(), "pia", PASSWORD).status_code == 200


def test_deleting_an_account_removes_it(admin, in_tenant, tenant):
    account = _invite(admin, "quinn")
    assert admin.delete(f"/api/v1/accounts/{account['id']}").status_code == 204
    assert admin.get(f"/api/v1/accounts/{account['id']}").status_code == 404
    assert admin.delete(f"/api/v1/accounts/{account['id']}").status_code == 404
    assert account["id"] not in {a["id"] for a in admin.get("/api/v1/accounts").json()["items"]}


def test_the_listing_pages_through_every_account_decrypted_while_storage_stays_sealed(admin, in_tenant, tenant):
    made = {_invite(admin, f"reader-{n}", display_name=f"Reader Number {n}")["id"] for n in range(5)}
    admin.post(f"/api/v1/accounts/{sorted(made)[0]}/roles", json={"role": "circulation_staff"})

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = admin.get("/api/v1/accounts", params=params).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5 and {a["id"] for a in seen} == made
    by_name = {a["username"]: a for a in seen}
    assert by_name["reader-3"]["email"] == "reader-3@alpha.example.org"
    assert by_name["reader-3"]["display_name"] == "Reader Number 3"
    assert {a["id"]: a["roles"] for a in seen}[sorted(made)[0]] == ["circulation_staff"]

    with in_tenant(tenant) as session:
        stored = session.execute(text("SELECT username, email, display_name FROM accounts")).all()
    assert len(stored) == 5
    for row in stored:
        for plain in (b"reader-", b"@alpha.example.org", b"Reader Number"):
            assert all(plain not in bytes(value) for value in row)


def test_an_unknown_cursor_is_a_clear_422(admin):
    response = admin.get("/api/v1/accounts", params={"cursor": "not-a-cursor"})
    assert response.status_code == 422


def test_a_duplicate_username_is_a_conflict(admin):
    _invite(admin, "ray")
    again = admin.post("/api/v1/accounts", json={"kind": "staff", "username": "ray", "email": "r2@alpha.example.org"})
    assert again.status_code == 409


@pytest.mark.parametrize("username", ["a", "two words", "tab\there", "ideographic\u3000space", "x" * 255])
def test_usernames_create_account_would_refuse_are_refused_by_the_schema(admin, username):
    response = admin.post("/api/v1/accounts", json={"kind": "staff", "username": username, "email": "u@alpha.org"})
    assert response.status_code == 422
    assert response.json()["type"] == "urn:bookwarden:problem:validation-error"


def test_another_institutions_admin_reaches_none_of_these_accounts(admin, client_for, other_tenant, in_tenant, tenant):
    account = _invite(admin, "sam")
    stranger = client_for(other_tenant, permissions=ADMIN)
    assert stranger.get("/api/v1/accounts").json()["items"] == []
    assert stranger.get(f"/api/v1/accounts/{account['id']}").status_code == 404
    for action in ("disable", "enable", "invitation", "password-reset"):
        assert stranger.post(f"/api/v1/accounts/{account['id']}/{action}").status_code == 404, action
    assert stranger.delete(f"/api/v1/accounts/{account['id']}").status_code == 404
    assert admin.get(f"/api/v1/accounts/{account['id']}").json()["status"] == "invited"
    assert len(_mails(in_tenant, tenant, account["email"])) == 1


def test_circulation_staff_cannot_manage_accounts(client_for, admin, tenant):
    account = _invite(admin, "tess")
    staff = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.CIRCULATION_STAFF])
    assert staff.get("/api/v1/accounts").status_code == 403
    assert staff.get(f"/api/v1/accounts/{account['id']}").status_code == 403
    body = {"kind": "staff", "username": "sneaky", "email": "sneaky@alpha.example.org"}
    refused = staff.post("/api/v1/accounts", json=body)
    assert refused.status_code == 403 and "accounts.manage" in refused.json()["detail"]
    for action in ("disable", "enable", "invitation", "password-reset"):
        assert staff.post(f"/api/v1/accounts/{account['id']}/{action}").status_code == 403, action
    assert staff.delete(f"/api/v1/accounts/{account['id']}").status_code == 403


def test_an_auditor_reads_accounts_but_changes_none(client_for, admin, tenant):
    account = _invite(admin, "uma")
    auditor = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.AUDITOR])
    assert auditor.get(f"/api/v1/accounts/{account['id']}").json()["username"] == "uma"
    assert auditor.post(f"/api/v1/accounts/{account['id']}/disable").status_code == 403


def test_link_lifetimes(db, tenant):
    issued = links.issue(db.master, LinkPurpose.INVITE, tenant.id, None, now=1_000_000.0)
    assert links.verify(db.master, issued.token, LinkPurpose.INVITE, now=1_000_000.0 + 72 * 3600 - 1)
    with pytest.raises(links.InvalidLink):
        links.verify(db.master, issued.token, LinkPurpose.INVITE, now=1_000_000.0 + 72 * 3600)
    assert links.LIFETIME[LinkPurpose.RESET] == timedelta(hours=1)
