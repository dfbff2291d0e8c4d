"""Every period the platform publishes, and the job that enforces it (DESIGN, invariant 4).

The personal-data registry declares how long each category is kept (registry.py POLICIES); the records of
processing print that, and the institution's own periods where it set them (retention/service.py GOVERNS).
Each entry below names, for one category, the words of the published retention it enforces, the columns
(table.column) it removes, the job kind that removes them and the period that job applies, taken from the
job's own declaration, not written again here. `tests/privacy/test_published_periods.py` fails when:

- a category with a period (a number of days, or a duration in its text) has no entry;
- a column the registry places in such a category is neither in an entry nor in EXEMPT with its reason;
- no entry of a category applies the category's published number of days;
- an entry quotes words its category's retention does not say;
- a job named here has no handler in the worker (jobs.service handler_for), or no area schedules it.

Each job's own test ages rows in the database and watches exactly those past the period go, in more than
one institution (tests/privacy/test_published_periods.py and the area's tests).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bookwarden.access.grants.jobs import ENDED_GRANTS
from bookwarden.audit.retention import RETENTION_JOB as AUDIT_RETENTION_JOB
from bookwarden.core.classification import Category
from bookwarden.identity.jobs import INACTIVE_ACCOUNTS, PASSWORD_HISTORY, PURGE_EXPIRED, SESSION_KEPT_AFTER_END
from bookwarden.jobs.service import UnknownJobKind, handler_for
from bookwarden.privacy.complaints.jobs import ANSWERED_COMPLAINTS
from bookwarden.privacy.concerns.jobs import RECEIVED_CONCERNS
from bookwarden.privacy.consent.jobs import WITHDRAWN_CONSENT
from bookwarden.privacy.registry import POLICIES, CategoryPolicy, Registry, registry
from bookwarden.privacy.requests.form import INQUIRY_KEPT, LAPSE
from bookwarden.privacy.requests.jobs import CLOSED_REQUESTS
from bookwarden.privacy.retention.jobs import AUDIT_CONTEXTS, OLD_MAIL
from bookwarden.privacy.retention.models import RetentionCategory
from bookwarden.privacy.retention.service import PURGE_JOB, default_days
from bookwarden.privacy.subjects.export import PURGE as PACKAGES_PURGE
from bookwarden.privacy.subjects.export import VALID_FOR as PACKAGE_VALID_FOR
from bookwarden.tenancy.periods import Period


class Disposal(enum.StrEnum):
    DELETED = "deleted"
    KEY_DESTROYED = "deleted, the subject's key destroyed"  # unreadable in every backup too
    ERASED = "erased"  # the erasure: every row about the patron, the key, a signed certificate
    SEGMENT_DROPPED = "sealed audit segment dropped"


@dataclass(frozen=True)
class EnforcedPeriod:
    category: Category
    published: str  # words of POLICIES[category].retention; "" for a column the text does not name
    locations: tuple[str, ...]
    job: str
    keep_days: int | None  # what the job applies by default; None: not a number of days (see `how`)
    disposal: Disposal
    how: str


@dataclass(frozen=True)
class Exempt:
    """A column of a category with a period that no job removes on a clock, and why."""

    location: str
    why: str


def _by(period: Period) -> tuple[str, int | None]:
    return period.job, period.keep.days if period.keep is not None else None


INACTIVE = "then 2 years of inactivity before deletion"
PATRON_REGISTERED = "while the patron is registered with the institution"
INACTIVE_PATRONS_HOW = (
    "retention category inactive_patrons: a patron with no loan, return, search, post or sign-in for the period "
    "(and no open loan) is erased; the institution may set its own period"
)
INACTIVE_ACCOUNTS_HOW = (
    "an account not linked to a patron, with no sign-in, password set or creation within the period, is deleted "
    "and its key destroyed (an account linked to a patron goes with the patron)"
)

PERIODS: tuple[EnforcedPeriod, ...] = (
    # -- identity and contact details --------------------------------------------------------------------------
    EnforcedPeriod(
        Category.IDENTITY, INACTIVE, ("patrons.name", "patrons.birth_date"),
        PURGE_JOB, default_days(RetentionCategory.INACTIVE_PATRONS), Disposal.ERASED, INACTIVE_PATRONS_HOW,
    ),
    EnforcedPeriod(
        Category.IDENTITY, INACTIVE, ("accounts.username", "accounts.display_name"),
        *_by(INACTIVE_ACCOUNTS), Disposal.KEY_DESTROYED, INACTIVE_ACCOUNTS_HOW,
    ),
    EnforcedPeriod(
        Category.IDENTITY, "", ("subject_export_chunks.body",),
        PACKAGES_PURGE, PACKAGE_VALID_FOR.days, Disposal.KEY_DESTROYED,
        "an access package goes when its 7-day link expires, with the key that sealed it (retention category "
        "exports is its backstop)",
    ),
    EnforcedPeriod(
        Category.CONTACT, INACTIVE, ("patrons.email", "patrons.phone", "patrons.postal_address"),
        PURGE_JOB, default_days(RetentionCategory.INACTIVE_PATRONS), Disposal.ERASED, INACTIVE_PATRONS_HOW,
    ),
    EnforcedPeriod(
        Category.CONTACT, INACTIVE, ("accounts.email",),
        *_by(INACTIVE_ACCOUNTS), Disposal.KEY_DESTROYED, INACTIVE_ACCOUNTS_HOW,
    ),
    EnforcedPeriod(
        Category.CONTACT, "", ("complaints.contact_address",),
        *_by(ANSWERED_COMPLAINTS), Disposal.DELETED, "the address to answer to goes with its complaint",
    ),
    EnforcedPeriod(
        Category.CONTACT, "", ("privacy_concerns.contact_address",),
        *_by(RECEIVED_CONCERNS), Disposal.DELETED, "the address to answer a report at goes with the report",
    ),
    EnforcedPeriod(
        Category.CONTACT, "", ("outbox.to_address",),
        *_by(OLD_MAIL), Disposal.DELETED, "a recipient's address goes with the mail, 90 days after it was sent",
    ),
    EnforcedPeriod(
        Category.CONTACT, "", ("privacy_inquiries.contact_address",),
        LAPSE, INQUIRY_KEPT.days, Disposal.KEY_DESTROYED,
        "an inquiry never forwarded to an institution lapses after 30 days, its address's key shredded "
        "(forwarding shreds it at once)",
    ),
    EnforcedPeriod(
        Category.INSTITUTIONAL_ID, PATRON_REGISTERED, ("patrons.institutional_id", "patrons.barcode"),
        PURGE_JOB, default_days(RetentionCategory.INACTIVE_PATRONS), Disposal.ERASED, INACTIVE_PATRONS_HOW,
    ),
    EnforcedPeriod(
        Category.AFFILIATION, PATRON_REGISTERED, ("patrons.affiliation",),
        PURGE_JOB, default_days(RetentionCategory.INACTIVE_PATRONS), Disposal.ERASED, INACTIVE_PATRONS_HOW,
    ),
    # -- what patrons do ---------------------------------------------------------------------------------------
    EnforcedPeriod(
        Category.CIRCULATION_HISTORY, "1 year after the item is returned", ("loans.item_title",),
        PURGE_JOB, default_days(RetentionCategory.LOAN_HISTORY), Disposal.DELETED,
        "retention category loan_history: returned loans are deleted, which is more than anonymised; what "
        "outlives them is the anonymised counts of publisher reports already released; the institution may "
        "set its own period",
    ),
    EnforcedPeriod(
        Category.SEARCH_HISTORY, "90 days", ("searches.query",),
        PURGE_JOB, default_days(RetentionCategory.SEARCHES), Disposal.DELETED,
        "retention category searches; the institution may set its own period",
    ),
    EnforcedPeriod(
        Category.USER_CONTENT, "", ("posts.body",),
        PURGE_JOB, default_days(RetentionCategory.POSTS), Disposal.DELETED,
        "kept until deleted by default; retention category posts applies the period the institution sets, "
        "which the records of processing then print",
    ),
    # -- security ----------------------------------------------------------------------------------------------
    EnforcedPeriod(
        Category.DEVICE_NETWORK, "sign-in sessions: 1 day after they end",
        ("sessions.source_address", "sessions.user_agent", "operator_sessions.source_address",
         "operator_sessions.user_agent"),
        PURGE_EXPIRED, SESSION_KEPT_AFTER_END.days, Disposal.DELETED,
        "hourly: an institution's sessions and the operators' a day after they ended (expired or signed out)",
    ),
    EnforcedPeriod(
        Category.DEVICE_NETWORK, "in the audit trail: at most 90 days",
        ("audit_event_contexts.source_address", "audit_event_contexts.user_agent"),
        *_by(AUDIT_CONTEXTS), Disposal.DELETED,
        "daily, in every chain (the platform's too): addresses and user agents kept apart from their events, "
        "after BOOKWARDEN_AUDIT_CONTEXT_DAYS (90, never more); the events keep a commitment that no key opens "
        "any more, and the chain still verifies. An erasure deletes those of the patron's events at once",
    ),
    EnforcedPeriod(
        Category.DEVICE_NETWORK, "events recorded before migration 0026: as long as their segment is kept",
        ("audit_events.source_address", "audit_events.user_agent"),
        AUDIT_RETENTION_JOB, None, Disposal.SEGMENT_DROPPED,
        "daily: sealed segments older than BOOKWARDEN_AUDIT_RETENTION_DAYS, or the institution's longer "
        "period (retention category audit_segments), never past a legal hold. These events hashed the values "
        "themselves: removing them sooner would break the chain",
    ),
    EnforcedPeriod(
        # The job is the monitor's, a layer above this one: named here, found by the worker (its handler checked).
        Category.DEVICE_NETWORK, "security alerts: 90 days after their last event",
        ("monitor_alerts.source_address", "monitor_alerts.group_key", "monitor_alerts.grouped"),
        "monitor.forget_alert_addresses", 90, Disposal.DELETED,
        "daily: an alert quiet for 90 days keeps its rule, counts and times, and loses its address and group",
    ),
    EnforcedPeriod(
        # The monitor's job too (monitor/response/jobs.py), named here as the alerts' is.
        Category.DEVICE_NETWORK,
        "blocked addresses (active response): while blocked, then the repeat-offender look-back (7 days)",
        ("address_blocks.network", "response_strikes.network"),
        "monitor.forget_ended_blocks", 7, Disposal.DELETED,
        "daily: a block ended (expired or lifted) and a jail's count older than the longest look-back are deleted",
    ),
    EnforcedPeriod(
        Category.DEVICE_NETWORK, "", ("webauthn_credentials.transports", "webauthn_credentials.name"),
        *_by(INACTIVE_ACCOUNTS), Disposal.KEY_DESTROYED, "a security key's name goes with its account",
    ),
    EnforcedPeriod(
        Category.CREDENTIALS, "old password hashes as far back as the password policy's history",
        ("password_history.password_hash",),
        *_by(PASSWORD_HISTORY), Disposal.DELETED,
        "daily: each account keeps its newest (history - 1) old hashes, the current password counting first",
    ),
    # -- privacy functions -------------------------------------------------------------------------------------
    EnforcedPeriod(
        Category.PREFERENCES, "consent records 3 years after withdrawal", ("consent_records.given",),
        *_by(WITHDRAWN_CONSENT), Disposal.DELETED,
        "daily: a withdrawal and the records of its purpose before it, 3 years after the withdrawal, through "
        "one database function that holds the period (the history is append-only for the application)",
    ),
    EnforcedPeriod(
        Category.CORRESPONDENCE, "90 days after sending", ("outbox.subject", "outbox.body"),
        *_by(OLD_MAIL), Disposal.DELETED, "daily: mail sent (or given up) 90 days ago",
    ),
    EnforcedPeriod(
        Category.COMPLAINTS, "3 years after the answer", ("complaints.subject", "complaints.body", "complaints.answer"),
        *_by(ANSWERED_COMPLAINTS), Disposal.DELETED, "daily: answered complaints; open ones stay whatever their age",
    ),
    EnforcedPeriod(
        Category.PRIVACY_REQUESTS, "3 years after the request is completed or denied",
        ("privacy_requests.corrections", "privacy_requests.decision_reason", "privacy_requests.hold_reason"),
        *_by(CLOSED_REQUESTS), Disposal.DELETED, "daily: completed or denied requests, with their one-time codes",
    ),
    EnforcedPeriod(
        Category.CONCERNS, "2 years after the report was received", ("privacy_concerns.description",),
        *_by(RECEIVED_CONCERNS), Disposal.DELETED, "daily: reports received 2 years ago, handled or not",
    ),
    EnforcedPeriod(
        Category.STAFF_ACTIVITY, "2 years after the grant ended", ("operator_grants.justification",),
        *_by(ENDED_GRANTS), Disposal.DELETED,
        "daily: grants denied, revoked or expired 2 years ago; the trail keeps every step without the justification",
    ),
)  # fmt: skip

EXEMPT: tuple[Exempt, ...] = (
    Exempt(
        "operator_accounts.username",
        "the platform's own staff, in no institution's records: operator accounts are disabled, never deleted, so "
        "the audit trail naming them always points at a row (migration 0012)",
    ),
    Exempt(
        "security_contacts.email",
        "an address the institution lists to hear of entitlement changes, not a patron's or an account's: kept "
        "while the institution lists it (DELETE /api/v1/security-contacts/{id} removes one), and with the institution",
    ),
)


def enforcing(category: Category) -> tuple[EnforcedPeriod, ...]:
    return tuple(p for p in PERIODS if p.category is category)


def jobs() -> frozenset[str]:
    return frozenset(p.job for p in PERIODS)


# A part of a published retention that states a period: a number of days, months or years, the password
# history's depth, the audit trail's segments. "while the account exists" is no period: the data goes with
# what it belongs to.
STATES_A_PERIOD = re.compile(r"\b\d+\s+(?:days?|months?|years?|hours?)\b|\bhistory\b|\bsegment\b", re.IGNORECASE)


def problems(
    policies: Mapping[Category, CategoryPolicy] = POLICIES,
    entries: Iterable[EnforcedPeriod] = PERIODS,
    exempt: Iterable[Exempt] = EXEMPT,
    found: Registry | None = None,
) -> list[str]:
    """Every published period without its job, one line each (the test asserts none)."""
    found = found or registry()
    entries, exempted = tuple(entries), {e.location for e in exempt}
    columns = {c.qualified: c for t in found.tables.values() for c in t.personal_columns}
    out = []
    for category, policy in sorted(policies.items()):
        mine = [p for p in entries if p.category is category]
        for clause in (c.strip() for c in policy.retention.split(";")):
            if STATES_A_PERIOD.search(clause) and not any(p.published and p.published in clause for p in mine):
                out.append(f'{category.value}: publishes "{clause}" and no job enforces it (privacy/periods.py)')
        if policy.keep_days is None:
            continue
        if all(p.keep_days != policy.keep_days for p in mine):
            applied = sorted({p.keep_days for p in mine if p.keep_days is not None})
            out.append(f"{category.value}: publishes {policy.keep_days} days; its jobs apply {applied or 'none'}")
        covered = {location for p in mine for location in p.locations} | exempted
        out += [
            f'{column.qualified}: holds {category.value}, kept "{policy.retention}", and no job removes it: name '
            "it in privacy/periods.py PERIODS with its job, or in EXEMPT with the reason"
            for column in found.locations(category)
            if column.qualified not in covered
        ]
    for entry in entries:
        said = policies[entry.category].retention if entry.category in policies else ""
        if entry.published and entry.published not in said:
            out.append(f'{entry.category.value}: "{entry.published}" is not what its retention says ("{said}")')
        try:
            handler_for(entry.job)
        except UnknownJobKind:
            out.append(f"{entry.job}: enforces {entry.category.value} but no handler is registered with the worker")
        for location in entry.locations:
            column = columns.get(location)
            if column is None or column.category is not entry.category:
                out.append(f"{location}: named for {entry.category.value}, which the registry does not place there")
    return sorted(out)
