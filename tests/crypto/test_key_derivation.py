"""Derived keys: every purpose keeps deriving, byte for byte, what it derived before crypto/derive.py
gathered the derivations, so links already mailed, role passwords already set, blind indexes already
stored and throttle counts already kept go on working; and no two purposes derive the same key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from types import SimpleNamespace
from uuid import UUID

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from bookwarden.backup import manifest as backup_manifest
from bookwarden.backup import offboarding
from bookwarden.core.permissions import BUILTIN_PERMISSIONS, BuiltinRole
from bookwarden.crypto.derive import KeyPurpose, derive
from bookwarden.crypto.keyring import blind_index
from bookwarden.crypto.master import MasterKeys, key_id
from bookwarden.db import provision
from bookwarden.db.session import tenant_session
from bookwarden.identity import links, passwords, throttle
from bookwarden.identity.links import LinkClaims, LinkPurpose
from bookwarden.identity.models import Account
from bookwarden.identity.saml import service as saml
from bookwarden.library import records as library
from bookwarden.library import schemas
from bookwarden.library.models import Patron
from bookwarden.privacy.concerns import service as concerns
from bookwarden.privacy.consent import unsubscribe
from bookwarden.privacy.consent.service import Topic
from bookwarden.privacy.registration import service as registration
from bookwarden.privacy.requests import form

MASTER = bytes([1]) * 32
MASTER_KEYS = MasterKeys(current_id=key_id(MASTER), keys={key_id(MASTER): MASTER})
INDEX_KEY = bytes([2]) * 32  # a tenant's blind-index key
TENANT = UUID("00000000-0000-4000-8000-000000000001")
ACCOUNT = UUID("00000000-0000-4000-8000-000000000002")
ADDRESS = "203.0.113.7"
EXPIRES = 2_000_000_000
NO_ACCOUNT_STATE = "CF7nDhK8MKYCLXqdAxihlA"  # links.state_of(MASTER_KEYS, None), as computed before


class _RecordingSession:
    """Stands in for the database in throttle.spend: keeps the key it was asked to count under."""

    def execute(self, statement, parameters):
        self.key = parameters["key"]
        return SimpleNamespace(first=lambda: (1,))


def _budget_key(budget: throttle.Budget) -> bytes:
    session = _RecordingSession()
    throttle.spend(session, budget, MASTER_KEYS, ADDRESS)
    return session.key


def _link(purpose: LinkPurpose) -> str:
    return links.sign(MASTER_KEYS, LinkClaims(purpose, TENANT, ACCOUNT, EXPIRES, NO_ACCOUNT_STATE))


DATABASE = SimpleNamespace(master=MASTER_KEYS)  # all that start_key and throttle_key read of a Database

# (purpose, parameter, the value as today's code exposes it, the value before derive.py).
# The expected values were produced by the code before crypto/derive.py existed (commit c517857),
# run on the inputs above; a change to any derivation, or a call site moved to another purpose,
# changes one of them. Never update one to make this pass: it stands for values already in use.
KNOWN_ANSWERS = [
    (KeyPurpose.MASTER_KEY_ID, None, lambda: key_id(MASTER), "0ce4405b1a684625"),
    (
        KeyPurpose.DATABASE_ROLE_PASSWORD,
        provision.OWNER_ROLE,
        lambda: provision.role_password(MASTER, provision.OWNER_ROLE),
        "e02e6c9e34dd87fd56f72a858cb9ce79c9a12330886667ea6df0af08f3a7069a",
    ),
    (
        KeyPurpose.DATABASE_ROLE_PASSWORD,
        provision.APP_ROLE,
        lambda: provision.role_password(MASTER, provision.APP_ROLE),
        "b1cea47f5e0130d9e2ef4b8300b21741c6d764811104e6f395d2766219db44cb",
    ),
    (
        KeyPurpose.ADDRESS_THROTTLE,
        None,
        lambda: throttle.address_key(MASTER_KEYS, ADDRESS).hex(),
        "2ec9ab7a744916799dd822cbff38b2ce97a98b0f6cad6a7d87163020ab7d0ffb",
    ),
    (
        KeyPurpose.ONE_TIME_LINK_STATE,
        None,
        lambda: links.state_of(MASTER_KEYS, None),
        NO_ACCOUNT_STATE,
    ),
    (
        KeyPurpose.ONE_TIME_LINK_STATE,
        None,
        lambda: links.fingerprint(MASTER_KEYS, "operator-enrolment\x00x\x00active\x00nonce"),
        "UivFVKommlks_OGe77Av7Q",
    ),
    (
        KeyPurpose.ONE_TIME_LINK_SIGNING,
        LinkPurpose.INVITE.value,
        lambda: _link(LinkPurpose.INVITE),
        "eyJhY2NvdW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAyIiwiZXhwIjoyMDAwMDAwMDAwLCJwdXJwb3NlIjoiaW52aXRl"
        "Iiwic3RhdGUiOiJDRjduRGhLOE1LWUNMWHFkQXhpaGxBIiwidGVuYW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAxIn0"
        ".EP1JGx9Z1zYxwEeL84kWiQXU-nS43bZaN6RWv1OHXIA",
    ),
    (
        KeyPurpose.ONE_TIME_LINK_SIGNING,
        LinkPurpose.RESET.value,
        lambda: _link(LinkPurpose.RESET),
        "eyJhY2NvdW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAyIiwiZXhwIjoyMDAwMDAwMDAwLCJwdXJwb3NlIjoicmVzZXQi"
        "LCJzdGF0ZSI6IkNGN25EaEs4TUtZQ0xYcWRBeGlobEEiLCJ0ZW5hbnQiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDEifQ"
        ".9BVFsF9taErE2AhCxCM0i606HRbpxUIaNrh8YL8F1pY",
    ),
    (
        KeyPurpose.ONE_TIME_LINK_SIGNING,
        LinkPurpose.MFA_ENROLMENT.value,
        lambda: _link(LinkPurpose.MFA_ENROLMENT),
        "eyJhY2NvdW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAyIiwiZXhwIjoyMDAwMDAwMDAwLCJwdXJwb3NlIjoibWZhLWVu"
        "cm9sbWVudCIsInN0YXRlIjoiQ0Y3bkRoSzhNS1lDTFhxZEF4aWhsQSIsInRlbmFudCI6IjAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAw"
        "MDAwMSJ9.nh6q_mcGqlFNG_B71JpfbJuRAm8dnjVbvfzS-xiOAMc",
    ),
    (
        KeyPurpose.ONE_TIME_LINK_SIGNING,
        LinkPurpose.OPERATOR_ENROLMENT.value,
        lambda: _link(LinkPurpose.OPERATOR_ENROLMENT),
        "eyJhY2NvdW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAyIiwiZXhwIjoyMDAwMDAwMDAwLCJwdXJwb3NlIjoib3BlcmF0"
        "b3ItZW5yb2xtZW50Iiwic3RhdGUiOiJDRjduRGhLOE1LWUNMWHFkQXhpaGxBIiwidGVuYW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAw"
        "MDAwMDAwMDAxIn0.3OFLvXj63xgpq1XO0f3cCRYkAr8mSlhs5uADIMaP7uY",
    ),
    # Added with the purpose (not from before derive.py): self-registration's address confirmation links.
    (
        KeyPurpose.ONE_TIME_LINK_SIGNING,
        LinkPurpose.EMAIL_CONFIRMATION.value,
        lambda: _link(LinkPurpose.EMAIL_CONFIRMATION),
        "eyJhY2NvdW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAyIiwiZXhwIjoyMDAwMDAwMDAwLCJwdXJwb3NlIjoiZW1haWwt"
        "Y29uZmlybWF0aW9uIiwic3RhdGUiOiJDRjduRGhLOE1LWUNMWHFkQXhpaGxBIiwidGVuYW50IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAw"
        "MDAwMDAwMDAxIn0.AGQ5xQFTXMaQ0u9M48QW8AXffNkgdtyVxf5bnK0BMTc",
    ),
    (
        KeyPurpose.UNSUBSCRIBE_LINK,
        None,
        lambda: unsubscribe.sign(MASTER_KEYS, TENANT, ACCOUNT, Topic.NEWSLETTERS),
        "AAAAAAAAQACAAAAAAAAAAQAAAAAAAEAAgAAAAAAAAAJuZXdzbGV0dGVycw._0jvI7nfBjOTymL4BNwRsxORBGFDLPsPBDbT8lc22I8",
    ),
    (
        KeyPurpose.SAML_SIGN_IN_START,
        None,
        lambda: saml.start_key(DATABASE, ADDRESS).hex(),
        "dc2b216b46fac7b52260f73988345f3b3bfac650e36a091047e37688e5deacd8",
    ),
    (
        KeyPurpose.SELF_REGISTRATION,
        None,
        lambda: registration.throttle_key(DATABASE, ADDRESS).hex(),
        "40ce9ade448dbea1530c23936f24d800fd18cad0679a2b5fd2eb6d5bd706affd",
    ),
    (
        KeyPurpose.PASSWORD_RESET_REQUEST,
        None,
        lambda: links._request_key(MASTER_KEYS, ADDRESS).hex(),
        "cd61bf6d99d119c648bc58bfa46008a671def0bd282f2fc890f1c98fc14cc20b",
    ),
    (
        KeyPurpose.PRIVACY_REQUEST_FORM,
        None,
        lambda: form._form_key(MASTER_KEYS, ADDRESS).hex(),
        "ad964ed8f959c826bc14e74c0949418a7e77d24e10ca002749dd7289a8e13db4",
    ),
    (
        KeyPurpose.CONCERN_REPORT,
        None,
        # New with this purpose: HMAC-SHA256 of b"concern reports" under the address's throttle key.
        lambda: concerns.throttle_key(MASTER_KEYS, ADDRESS).hex(),
        "bd437815bb0e8fd7c95678401335af77a7cf37e0ebddc4f4cc8366b93c4c69cc",
    ),
    (
        KeyPurpose.ADDRESS_BUDGET,
        throttle.COOKIE_CHOICE.purpose,
        lambda: _budget_key(throttle.COOKIE_CHOICE).hex(),
        "95d1001a0c3b3e741b36192cb370b28148f1379d38c338c91f162ffda3a7e779",
    ),
    # Added after derive.py (the anonymous-event budget, migration 0022): pinned from its first version.
    (
        KeyPurpose.ADDRESS_BUDGET,
        throttle.ANONYMOUS_EVENTS.purpose,
        lambda: _budget_key(throttle.ANONYMOUS_EVENTS).hex(),
        "cb4f3b3e681da53364b2e2231c0639eb91494563cdf683e111e2aad9b3ac54a0",
    ),
    # Added with backups (backup/manifest.py): wraps each backup's key; pinned from its first version,
    # since every backup taken so far is wrapped under it.
    (
        KeyPurpose.BACKUP_KEY_WRAP,
        None,
        lambda: backup_manifest.wrapping_key(MASTER).hex(),
        "727276d9d7dafe7e9c9f7e9bbab9e8cbe071cab339a3d62322f5a3d28416d0ae",
    ),
    # Added with offboarding (backup/offboarding.py): signs the links to final exports; pinned from its first
    # version, since a link already mailed must keep working until it expires.
    (
        KeyPurpose.OFFBOARDING_EXPORT_LINK,
        None,
        lambda: offboarding.link_key(MASTER).hex(),
        "5adec8d35a6dfdcd5060cdf787b88d31c7946d9f83ad39e7a34fa4755c719ea9",
    ),
    # Added with the web pages (web/csrf.py): keys the forms' CSRF tokens; pinned so a change of label
    # is seen (it would only void the forms open at that moment, but a silent change is still a change).
    (
        KeyPurpose.WEB_FORM_CSRF,
        None,
        lambda: (
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bookwarden web forms: csrf")
            .derive(MASTER)
            .hex()
        ),
        "d507064a4c2e7b19186d78eb1ab63325a150557ca196fcccfe0b36658b08609b",
    ),
]

DERIVED = list(dict.fromkeys((purpose, parameter) for purpose, parameter, _, _ in KNOWN_ANSWERS))
BUDGETS = [value for value in vars(throttle).values() if isinstance(value, throttle.Budget)]


@pytest.mark.parametrize(
    ("purpose", "parameter", "computed", "expected"),
    KNOWN_ANSWERS,
    ids=[f"{purpose.name}-{parameter}" for purpose, parameter, _, _ in KNOWN_ANSWERS],
)
def test_each_purpose_derives_what_the_code_before_derive_py_derived(purpose, parameter, computed, expected):
    assert computed() == expected


def test_the_known_answers_cover_every_purpose_and_every_parameter_in_use():
    covered = set(DERIVED)
    assert {purpose for purpose, _ in covered} == set(KeyPurpose)
    in_use = {(KeyPurpose.ONE_TIME_LINK_SIGNING, purpose.value) for purpose in LinkPurpose}
    in_use |= {(KeyPurpose.DATABASE_ROLE_PASSWORD, role) for role in (provision.OWNER_ROLE, provision.APP_ROLE)}
    in_use |= {(KeyPurpose.ADDRESS_BUDGET, budget.purpose) for budget in BUDGETS}
    assert in_use <= covered


def test_no_two_purposes_derive_the_same_key():
    # Labels are compared with their parameters filled in: a parameter could otherwise spell out
    # another purpose's label (ADDRESS_BUDGET's label is the bare budget name).
    labels = [purpose.label(parameter) for purpose, parameter in DERIVED]
    assert len(labels) == len(set(labels)), sorted(labels)
    assert len({derive(MASTER, purpose, parameter) for purpose, parameter in DERIVED}) == len(DERIVED)


def test_a_purpose_refuses_a_missing_or_unexpected_parameter():
    with pytest.raises(ValueError, match="DATABASE_ROLE_PASSWORD needs a parameter"):
        derive(MASTER, KeyPurpose.DATABASE_ROLE_PASSWORD)
    with pytest.raises(ValueError, match="UNSUBSCRIBE_LINK takes no parameter"):
        derive(MASTER, KeyPurpose.UNSUBSCRIBE_LINK, "newsletters")


def test_blind_indexes_are_what_they_were():
    # Not derived (the index key is a random key in the keyring); listed because stored indexes
    # must keep matching, and the sign-in throttle keys its account counts with one.
    expected = "a080b5aa24a6526c810c1b3b4f1494dd1c8a55e015444e6738b6fc888979ac02"  # before derive.py
    assert blind_index(INDEX_KEY, "email", "  Ada@Example.org ").hex() == expected


# -- a database made before derive.py -------------------------------------------------------------
# The formulas below are the code before crypto/derive.py, copied out, so that what it made
# (a mailed link, a stored index, a role password) is checked against the code of today.


def _old_hkdf(master_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master_key)


def _old_b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _old_invitation(master_key: bytes, tenant_id: UUID, account: Account) -> str:
    email_index = account.email_index.hex() if account.email_index else "none"
    material = f"{account.password_hash or 'none'}\x00{account.status.value}\x00{email_index}"
    state_key = _old_hkdf(master_key, b"bookwarden one-time links: account state")
    state = _old_b64(hmac.new(state_key, material.encode(), hashlib.sha256).digest()[:16])
    claims = {
        "purpose": "invite",
        "tenant": str(tenant_id),
        "account": str(account.id),
        "exp": int(time.time()) + 3600,
        "state": state,
    }
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    sign_key = _old_hkdf(master_key, b"bookwarden one-time links: sign invite")
    return f"{_old_b64(payload)}.{_old_b64(hmac.new(sign_key, payload, hashlib.sha256).digest())}"


@pytest.fixture
def fast_hashing(monkeypatch):
    """Hash at OWASP's floor: this is about the link, not the cost of the password hash."""
    monkeypatch.setattr(passwords, "DEFAULT", passwords.OWASP_FLOOR)


def test_an_invitation_mailed_before_derive_py_still_sets_a_password(
    fast_hashing, db, tenant, client_for, browser, in_tenant
):
    admin = client_for(tenant, permissions=BUILTIN_PERMISSIONS[BuiltinRole.TENANT_ADMIN])
    body = {"kind": "staff", "username": "ida", "email": "ida@alpha.example.org"}
    invited = admin.post("/api/v1/accounts", json=body)
    assert invited.status_code == 201, invited.text
    with in_tenant(tenant) as session:
        account = session.get(Account, (tenant.id, uuid.UUID(invited.json()["id"])))
        token = _old_invitation(db.master.current, tenant.id, account)
    password = "violet tractor mango 42 harbour"
    accepted = browser().post("/api/v1/auth/accept-invitation", json={"token": token, "password": password})
    assert accepted.status_code == 204, accepted.text
    login = {"institution": tenant.slug, "username": "ida", "password": password}
    assert browser().post("/api/v1/auth/login", json=login).status_code == 200


def test_an_unsubscribe_link_mailed_before_derive_py_still_verifies():
    payload = TENANT.bytes + ACCOUNT.bytes + b"newsletters"
    key = _old_hkdf(MASTER, b"bookwarden unsubscribe links")
    token = f"{_old_b64(payload)}.{_old_b64(hmac.new(key, payload, hashlib.sha256).digest())}"
    assert unsubscribe.verify(MASTER_KEYS, token) == unsubscribe.UnsubscribeClaims(TENANT, ACCOUNT, Topic.NEWSLETTERS)


def test_a_stored_blind_index_is_still_found(db, tenant, client_for):
    with tenant_session(db, tenant.id) as session:
        ada = library.create(session, library.PATRONS, schemas.PatronCreate(name="Ada", email="Ada@Example.org"))
        stored = session.scalar(select(Patron.email_index).where(Patron.id == ada.id))
    old = hmac.new(db.keyring.index_key(tenant.id), b"email\x00ada@example.org", hashlib.sha256).digest()
    assert stored == old
    found = client_for(tenant).post("/api/v1/patrons/lookup", json={"by": "email", "value": "ada@example.org"})
    assert [patron["id"] for patron in found.json()] == [str(ada.id)]


def test_the_database_roles_still_have_the_passwords_derived_before(master_keys, superuser_conn):
    # The embedded server trusts local connections, so logging in would prove nothing: the
    # password is checked against the SCRAM verifier PostgreSQL stored (RFC 5802, RFC 7677).
    for role in (provision.OWNER_ROLE, provision.APP_ROLE):
        old_password = hmac.new(master_keys.current, f"database-role:{role}".encode(), hashlib.sha256).hexdigest()
        (verifier,) = superuser_conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        iterations, salt, stored_key, server_key = re.fullmatch(
            r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier
        ).groups()
        salted = hashlib.pbkdf2_hmac("sha256", old_password.encode(), base64.b64decode(salt), int(iterations))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        assert hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)
        assert hmac.new(salted, b"Server Key", hashlib.sha256).digest() == base64.b64decode(server_key)
