"""How a column declares what it holds: the one vocabulary of the personal-data registry.

Models declare it on the column itself, through SQLAlchemy's `info`:

    email: Mapped[bytes | None] = mapped_column(LargeBinary, info=personal(Category.CONTACT))
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary, info=blind_index("email"))
    status: Mapped[str] = mapped_column(String(16), info=STATE)

`info["personal"]` stays the flag code can test; the rest says which category, how the value
is protected, and (for values that are themselves the only way to find the person) whom the row
is about. privacy/registry.py reads these declarations from every mapped table and fails its
test for any column left unclassified.

Importable from any models module: it depends on nothing of Bookwarden.
"""

from __future__ import annotations

import enum
from typing import Any


class Category(enum.StrEnum):
    """Categories of personal data, as the records of processing name them."""

    IDENTITY = "identity"
    CONTACT = "contact"
    INSTITUTIONAL_ID = "institutional_id"
    AFFILIATION = "affiliation"
    CIRCULATION_HISTORY = "circulation_history"
    SEARCH_HISTORY = "search_history"
    READING_LISTS = "reading_lists"
    USER_CONTENT = "user_content"
    CREDENTIALS = "credentials"
    DEVICE_NETWORK = "device_network"
    PREFERENCES = "preferences"
    CORRESPONDENCE = "correspondence"
    COMPLAINTS = "complaints"
    PRIVACY_REQUESTS = "privacy_requests"
    STAFF_ACTIVITY = "staff_activity"
    CONCERNS = "concerns"
    INCIDENTS = "incidents"


class Protection(enum.StrEnum):
    """How a personal value is kept at rest."""

    # AES-256-GCM under the subject's own key: destroying that key erases it everywhere, backups too.
    SUBJECT_KEY = "subject_key"
    # AES-256-GCM under the tenant's own key: survives one subject's erasure by design (mail that must
    # still be delivered, complaints the institution must answer); erased with its row or the tenant.
    TENANT_KEY = "tenant_key"
    # A one-way hash (argon2id, SHA-256 of a random token): verifiable, never readable.
    ONE_WAY_HASH = "one_way_hash"
    # Readable by the database: security data the platform must read as is (sign-in addresses).
    PLAIN = "plain"


class SubjectKind(enum.StrEnum):
    """Whom a row is about."""

    PATRON = "patron"  # a patron record (library user)
    ACCOUNT = "account"  # a person who signs in: staff, or a patron using the privacy portal
    CONTACT = "contact"  # a person named only by the row itself: a security contact, a mail recipient
    OPERATOR = "operator"  # platform operator staff
    PRINCIPAL = "principal"  # whoever acted: an account, an API token's holder or an operator


class Classification(enum.StrEnum):
    PERSONAL = "personal"
    # Not identifying by itself: a random id, a reference to another row, a keyed hash. It names a
    # person only together with other data or a key kept apart, so it is exported and erased with
    # its row, but it need not be encrypted.
    PSEUDONYMOUS = "pseudonymous"
    NOT_PERSONAL = "not_personal"


def personal(
    category: Category, protection: Protection = Protection.SUBJECT_KEY, *, subject: SubjectKind | None = None
) -> dict[str, Any]:
    """A personal column: its category and protection. `subject` when the value is the only link
    to the person (a security contact's address): the row is then about that person."""
    declared: dict[str, Any] = {
        "personal": True,
        "category": Category(category).value,
        "protection": Protection(protection).value,
    }
    if subject is not None:
        declared["subject"] = SubjectKind(subject).value
    return declared


def blind_index(of: str) -> dict[str, Any]:
    """A blind index of the personal column `of` (crypto/keyring.py blind_index).

    Pseudonymous, not anonymous: it is an HMAC-SHA-256 of the value under the tenant's index key,
    which lives in the keyring database, never in this one. Without that key nobody can recover
    the value or test a guess against it, and one value gives unrelated indexes in two tenants;
    with it, a guess can be confirmed. So it is erased with its row, exactly like the value.
    """
    return {
        "personal": False,
        "classification": Classification.PSEUDONYMOUS.value,
        "index_of": of,
        "reason": f"blind index of {of}: keyed HMAC under the tenant's index key, kept outside this database",
    }


def subject_link(kind: SubjectKind, reason: str) -> dict[str, Any]:
    """An id column (no foreign key) that names whom the row is about, e.g. the operator of a grant."""
    return {
        "personal": False,
        "classification": Classification.PSEUDONYMOUS.value,
        "subject": SubjectKind(kind).value,
        "reason": reason,
    }


def pseudonymous(reason: str) -> dict[str, Any]:
    return {"personal": False, "classification": Classification.PSEUDONYMOUS.value, "reason": reason}


def not_personal(reason: str) -> dict[str, Any]:
    return {"personal": False, "classification": Classification.NOT_PERSONAL.value, "reason": reason}


# The usual reasons, shared so that models stay one line per column.
STATE = not_personal("state or kind of the row, from a fixed list")
SETTING = not_personal("configuration of the institution or the platform")
COUNTER = not_personal("a count or sequence number kept for security or delivery")
ENTITLEMENT = not_personal("a role or permission name from the catalogue")
MACHINE = not_personal("describes a machine credential, a job or a delivery, not a person")
CATALOGUE = not_personal("the library's own identifiers (items, boards), not the patron's")
RANDOM_SECRET = not_personal("random bytes for one ceremony, tied to nothing about the person")
