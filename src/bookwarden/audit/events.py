"""What an audit event says: the action catalogue, outcomes, and the canonical encoding that is hashed.

The chain hash of event n is SHA-256(prev_hash || seq as 8 big-endian bytes || body_digest),
computed by the database when the event is appended; body_digest is SHA-256 of the canonical
encoding below, computed here. Verification recomputes both from the stored columns alone, so
the encoding must be reproducible from what PostgreSQL gives back: UTC times with microseconds,
JSON with sorted keys, no insignificant whitespace and ASCII escapes (core/canonical.py
`ascii_sorted_json`), details limited to strings, integers, booleans, null and lists of those (no
floats: their text form is not stable across encoders).

Two formats (the `format` column). Format 1, every event appended before migration 0026, hashes the source
address and user agent themselves. Format 2 hashes `context_commitment` instead: HMAC-SHA256 keyed by a
random key made for that event alone (`commitment_key`) over the canonical encoding of the two values
(RFC 8785, core/canonical.py), which are kept apart with their key (audit_event_contexts) and deleted
after a period or on erasure. The chain then no longer holds the values, and once the key is deleted
nobody, the platform included, can test a guessed address against the commitment (a key kept for the
whole platform would let its holder try every IPv4 address, and a master-key rotation would orphan it).
While the row is kept, verification recomputes the commitment from it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec

from bookwarden.core.canonical import ascii_sorted_json, ascii_sorted_json_fast, canonical_json
from bookwarden.db.session import PLATFORM

GENESIS = bytes(32)  # the predecessor of every chain's first event
FORMAT_HASHED_CONTEXT = 1  # before migration 0026: the address and user agent inside the hashed body
FORMAT_CONTEXT_APART = 2  # the address and user agent kept apart, the body holding their commitment
COMMITMENT_KEY_BYTES = 32
PLATFORM_CHAIN = PLATFORM  # events outside any institution: tenants, operator tokens, platform keys


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    DENIED = "denied"
    FAILED = "failed"


class Action(enum.StrEnum):
    # Customer data: every read and write, per record kind.
    PATRON_VIEWED = "patron.viewed"
    PATRON_LISTED = "patron.listed"
    PATRON_LOOKED_UP = "patron.looked_up"
    PATRON_CREATED = "patron.created"
    PATRON_CHANGED = "patron.changed"
    PATRON_DELETED = "patron.deleted"  # rows deleted and the subject key destroyed
    # Deletion by staff, in two people and a grace period (library/deletion.py).
    PATRON_DELETION_ASKED = "patron.deletion_asked"  # hidden and frozen, key kept, waiting for a second person
    PATRON_DELETION_CONFIRMED = "patron.deletion_confirmed"  # a second person agreed: destroyed at the period's end
    PATRON_DELETION_UNDONE = "patron.deletion_undone"  # a second person restored the patron within the period
    PATRON_DELETION_LAPSED = "patron.deletion_lapsed"  # nobody confirmed within the period: the patron is back
    PATRON_EXPORTED = "patron.exported"
    LOAN_VIEWED = "loan.viewed"
    LOAN_LISTED = "loan.listed"
    LOAN_CREATED = "loan.created"
    LOAN_CHANGED = "loan.changed"
    LOAN_DELETED = "loan.deleted"
    SEARCH_VIEWED = "search.viewed"
    SEARCH_LISTED = "search.listed"
    SEARCH_CREATED = "search.created"
    SEARCH_CHANGED = "search.changed"
    SEARCH_DELETED = "search.deleted"
    READING_LIST_VIEWED = "reading_list.viewed"
    READING_LIST_LISTED = "reading_list.listed"
    READING_LIST_CREATED = "reading_list.created"
    READING_LIST_CHANGED = "reading_list.changed"
    READING_LIST_DELETED = "reading_list.deleted"
    READING_LIST_ITEM_VIEWED = "reading_list_item.viewed"
    READING_LIST_ITEM_LISTED = "reading_list_item.listed"
    READING_LIST_ITEM_CREATED = "reading_list_item.created"
    READING_LIST_ITEM_CHANGED = "reading_list_item.changed"
    READING_LIST_ITEM_DELETED = "reading_list_item.deleted"
    POST_VIEWED = "post.viewed"
    POST_LISTED = "post.listed"
    POST_CREATED = "post.created"
    POST_CHANGED = "post.changed"
    POST_DELETED = "post.deleted"
    # Privacy: complaints and their deadlines, the records of processing.
    COMPLAINT_REGISTERED = "complaint.registered"
    COMPLAINT_ACKNOWLEDGED = "complaint.acknowledged"  # the acknowledgement mail left (its time is the SLA's)
    COMPLAINT_ESCALATED = "complaint.escalated"  # at risk, overdue or unacknowledged: officers told
    COMPLAINT_ANSWERED = "complaint.answered"
    COMPLAINT_VIEWED = "complaint.viewed"
    DPO_ESCALATION_LISTED = "dpo_escalation.listed"  # the platform DPO read the list across institutions
    DPO_ESCALATION_ACKNOWLEDGED = "dpo_escalation.acknowledged"  # the platform DPO took a late matter up
    COMPLAINT_LISTED = "complaint.listed"
    RECORDS_OF_PROCESSING_EXPORTED = "privacy.records_of_processing.exported"
    # Access packages and erasures: built, downloaded by link, expired; a patron erased, its certificate.
    SUBJECT_EXPORT_BUILT = "subject_export.built"
    SUBJECT_EXPORT_DOWNLOADED = "subject_export.downloaded"
    SUBJECT_EXPORT_EXPIRED = "subject_export.expired"  # rows deleted and the package key destroyed
    PATRON_ERASED = "patron.erased"  # every declared location, the subject key shredded, a certificate signed
    ERASURE_CERTIFICATE_VIEWED = "erasure_certificate.viewed"
    ERASURE_CERTIFICATE_VERIFIED = "erasure_certificate.verified"
    ERASURE_POLICY_VIEWED = "erasure_policy.viewed"
    ERASURE_POLICY_CHANGED = "erasure_policy.changed"
    # Retention: periods, legal holds, purge runs; the age gate of self-registration.
    RETENTION_POLICY_VIEWED = "retention_policy.viewed"
    RETENTION_POLICY_CHANGED = "retention_policy.changed"
    RETENTION_PREVIEWED = "retention.previewed"
    RETENTION_RUN_STARTED = "retention.run_started"
    RETENTION_PURGED = "retention.purged"  # one committed batch: category, count, ids
    RETENTION_RUN_COMPLETED = "retention.run_completed"
    RETENTION_RUN_LISTED = "retention.run_listed"
    RETENTION_RUN_VIEWED = "retention.run_viewed"
    # One committed batch of a job enforcing a published period (privacy/periods.py): job, table, count, ids.
    PERIOD_ENFORCED = "retention.period_enforced"
    LEGAL_HOLD_PLACED = "legal_hold.placed"
    LEGAL_HOLD_LIFTED = "legal_hold.lifted"
    LEGAL_HOLD_LISTED = "legal_hold.listed"
    SELF_REGISTRATION_SETTINGS_VIEWED = "self_registration.settings_viewed"
    SELF_REGISTRATION_SETTINGS_CHANGED = "self_registration.settings_changed"
    SELF_REGISTERED = "patron.self_registered"
    SELF_REGISTRATION_REFUSED = "patron.self_registration_refused"  # never a name, address or birth date
    # The address's owner opened the link mailed to it: from now on the address counts (mail, the request form).
    SELF_REGISTRATION_CONFIRMED = "patron.self_registration_confirmed"
    # Not confirmed in time: the patron erased (certificate, keys shredded); the address was never used.
    SELF_REGISTRATION_LAPSED = "patron.self_registration_lapsed"
    # Anonymized publisher reports: the catalogue they join, their rules, each release (a disclosure).
    CATALOGUE_IMPORTED = "catalogue.imported"
    CATALOGUE_LISTED = "catalogue.listed"
    PUBLISHER_REPORT_POLICY_VIEWED = "publisher_report.policy_viewed"
    PUBLISHER_REPORT_POLICY_CHANGED = "publisher_report.policy_changed"
    PUBLISHER_BUDGET_LISTED = "publisher_report.budget_listed"
    PUBLISHER_BUDGET_CHANGED = "publisher_report.budget_changed"
    PUBLISHER_REPORT_RELEASED = "publisher_report.released"  # anonymized counts left, epsilon spent
    PUBLISHER_REPORT_LISTED = "publisher_report.listed"
    PUBLISHER_REPORT_VIEWED = "publisher_report.viewed"  # a release read again: the same numbers, no new epsilon
    # Data-subject requests: every transition of the lifecycle, the queue read, the institution's deadline.
    PRIVACY_REQUEST_RECEIVED = "privacy_request.received"
    PRIVACY_REQUEST_CODE_SENT = "privacy_request.code_sent"  # a one-time code mailed to the address on file
    PRIVACY_REQUEST_VERIFIED = "privacy_request.identity_verified"
    PRIVACY_REQUEST_APPROVED = "privacy_request.approved"
    PRIVACY_REQUEST_DENIED = "privacy_request.denied"
    PRIVACY_REQUEST_STARTED = "privacy_request.in_progress"
    PRIVACY_REQUEST_COMPLETED = "privacy_request.completed"
    PRIVACY_REQUEST_HELD = "privacy_request.on_legal_hold"
    PRIVACY_REQUEST_RESUMED = "privacy_request.resumed"
    PRIVACY_REQUEST_LAPSED = "privacy_request.lapsed"  # a form never confirmed with its code: removed
    PRIVACY_REQUEST_REMINDED = "privacy_request.reminded"  # officers told the due date is near
    PRIVACY_REQUEST_ESCALATED = "privacy_request.escalated"  # overdue: officers (or security contacts) told
    PRIVACY_REQUEST_LISTED = "privacy_request.listed"
    PRIVACY_REQUEST_VIEWED = "privacy_request.viewed"
    PRIVACY_REQUEST_POLICY_VIEWED = "privacy_request.policy_viewed"
    PRIVACY_REQUEST_POLICY_CHANGED = "privacy_request.policy_changed"
    PRIVACY_RESTRICTION_APPLIED = "privacy_restriction.applied"
    PRIVACY_RESTRICTION_LIFTED = "privacy_restriction.lifted"
    PRIVACY_INQUIRY_RECEIVED = "privacy_inquiry.received"  # sent to the platform, no institution named
    PRIVACY_INQUIRY_FORWARDED = "privacy_inquiry.forwarded"  # into the named institution's queue
    PRIVACY_INQUIRY_LAPSED = "privacy_inquiry.lapsed"  # never named within 30 days: contact shredded
    # Consent, preferences, cookie choices, objections and disclosures (privacy/consent/service.py, disclosures.py).
    PREFERENCES_VIEWED = "privacy.preferences.viewed"
    PREFERENCES_CHANGED = "privacy.preferences.changed"  # consent records appended
    CONSENTS_VIEWED = "privacy.consents.viewed"  # the consent history read
    UNSUBSCRIBE_VIEWED = "privacy.unsubscribe.viewed"  # the confirmation page of a one-click link
    UNSUBSCRIBED = "privacy.unsubscribed"  # a one-click unsubscribe honoured
    COOKIE_CHOICE_RECORDED = "privacy.cookie_choice.recorded"
    COOKIE_CHOICE_VIEWED = "privacy.cookie_choice.viewed"
    OBJECTION_RECORDED = "privacy.objection.recorded"
    OBJECTION_WITHDRAWN = "privacy.objection.withdrawn"
    DISCLOSED = "privacy.disclosure.made"  # personal data shared with a third party
    DISCLOSURE_LISTED = "privacy.disclosure.listed"
    DISCLOSURE_VIEWED = "privacy.disclosure.viewed"
    DISCLOSURE_POLICY_VIEWED = "privacy.disclosure_policy.viewed"
    DISCLOSURE_POLICY_CHANGED = "privacy.disclosure_policy.changed"
    MAILING_SENT = "mailing.sent"  # optional mail queued to the patrons who agreed to its topic
    # The institution's privacy notice (privacy/notices/service.py): versions published, read, a material change
    # mailed to patrons (one event per committed batch: count and patron ids).
    PRIVACY_NOTICE_PUBLISHED = "privacy_notice.published"
    PRIVACY_NOTICE_VIEWED = "privacy_notice.viewed"
    PRIVACY_NOTICE_LISTED = "privacy_notice.listed"
    PRIVACY_NOTICE_CHANGE_MAILED = "privacy_notice.change_mailed"
    # Reports of suspected unauthorised access or of a child's data (privacy/concerns/service.py).
    CONCERN_REPORTED = "concern.reported"  # also each refusal of the open form (throttled), without what was sent
    CONCERN_LISTED = "concern.listed"
    CONCERN_VIEWED = "concern.viewed"
    SHARING_CHECKED = "privacy.sharing.checked"  # the sharing gate asked: who is left out of sharing, and why
    # Access control.
    ACCESS_DENIED = "access.denied"
    AUTH_REJECTED = "auth.rejected"  # a credential that resolved to no principal
    REQUEST_FAILED = "request.failed"  # refused for another reason: not found, conflict, invalid input
    SIGN_IN_SUCCEEDED = "auth.sign_in.succeeded"
    SIGN_IN_FAILED = "auth.sign_in.failed"
    SIGN_IN_THROTTLED = "auth.sign_in.throttled"
    ACCOUNT_LOCKED = "auth.account.locked"
    SIGNED_OUT = "auth.signed_out"
    SIGNED_OUT_EVERYWHERE = "auth.signed_out_everywhere"
    SESSION_VIEWED = "auth.session.viewed"
    MFA_PASSED = "auth.mfa.passed"
    MFA_FAILED = "auth.mfa.failed"
    MFA_ENROLLED = "mfa.enrolled"
    MFA_REMOVED = "mfa.removed"
    MFA_RESET = "mfa.reset"
    MFA_VIEWED = "mfa.viewed"
    MFA_ENROLMENT_STARTED = "mfa.enrolment_started"  # a TOTP secret or security-key challenge handed out
    MFA_CHANGED = "mfa.changed"  # a security key renamed
    MFA_CHALLENGED = "auth.mfa.challenged"  # a security-key challenge for the second step of a sign-in
    RECOVERY_CODES_REGENERATED = "mfa.recovery_codes.regenerated"
    PASSWORD_CHANGED = "password.changed"
    PASSWORD_RESET_REQUESTED = "password.reset.requested"
    PASSWORD_RESET = "password.reset"
    ACCOUNT_CREATED = "account.created"
    ACCOUNT_INVITED = "account.invited"
    ACCOUNT_ACTIVATED = "account.activated"
    ACCOUNT_VIEWED = "account.viewed"
    ACCOUNT_LISTED = "account.listed"
    ACCOUNT_DISABLED = "account.disabled"
    ACCOUNT_ENABLED = "account.enabled"
    ACCOUNT_DELETED = "account.deleted"
    ROLE_CREATED = "role.created"
    ROLE_CHANGED = "role.changed"
    ROLE_DELETED = "role.deleted"
    ROLE_LISTED = "role.listed"
    ROLE_GRANTED = "role.granted"
    ROLE_REVOKED = "role.revoked"
    POLICY_CHANGED = "password_policy.changed"
    POLICY_VIEWED = "password_policy.viewed"
    SSO_CONFIGURED = "sso.configured"
    SSO_REMOVED = "sso.removed"
    SSO_VIEWED = "sso.viewed"
    SSO_METADATA_SERVED = "sso.metadata_served"  # the institution's public SP metadata
    SSO_SIGN_IN_STARTED = "auth.sign_in.started"  # a browser sent to the institution's IdP
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_APPROVED = "approval.approved"
    APPROVAL_REJECTED = "approval.rejected"
    APPROVAL_LISTED = "approval.listed"
    SECURITY_CONTACT_ADDED = "security_contact.added"
    SECURITY_CONTACT_REMOVED = "security_contact.removed"
    SECURITY_CONTACT_LISTED = "security_contact.listed"
    GRANT_REQUESTED = "operator_grant.requested"
    GRANT_APPROVED = "operator_grant.approved"
    GRANT_BREAK_GLASS = "operator_grant.break_glass"
    GRANT_REJECTED = "operator_grant.rejected"
    GRANT_REVOKED = "operator_grant.revoked"
    GRANT_EXPIRED = "operator_grant.expired"
    GRANT_USED = "operator_grant.used"
    GRANT_LISTED = "operator_grant.listed"
    MFA_ENROLMENT_LINK_SENT = "mfa.enrolment_link_sent"  # an administrator's link to enrol after a reset
    NOTICE_MUTES_VIEWED = "security_contact.mutes_viewed"
    NOTICE_MUTES_CHANGED = "security_contact.mutes_changed"
    NOTICES_SENT_LISTED = "security_contact.notices_listed"  # the entitlement notices mailed, read back
    OPERATOR_ACCOUNT_CREATED = "operator_account.created"
    OPERATOR_ACCOUNT_LISTED = "operator_account.listed"
    OPERATOR_ACCOUNT_DISABLED = "operator_account.disabled"
    OPERATOR_ACCOUNT_ENABLED = "operator_account.enabled"
    OPERATOR_ENROLMENT_LINK_ISSUED = "operator_account.enrolment_link_issued"
    OPERATOR_ACCOUNT_ENROLLED = "operator_account.enrolled"  # password set and authenticator app confirmed
    TOKEN_ISSUED = "token.issued"
    TOKEN_REVOKED = "token.revoked"
    TOKEN_LISTED = "token.listed"  # names, owners, permissions and dates: never a token or its hash
    # The platform.
    TENANT_CREATED = "tenant.created"
    TENANT_LISTED = "tenant.listed"
    TENANT_VIEWED = "tenant.viewed"
    TENANT_SUSPENDED = "tenant.suspended"
    TENANT_RESUMED = "tenant.resumed"
    KEY_ROTATED = "key.rotated"
    DATABASE_MIGRATED = "database.migrated"
    SERVICE_STARTED = "service.started"
    CONSOLE_COMMAND = "console.command"  # a command run on the platform console: OS user, command, permission
    DATABASE_URL_SHOWN = "database.url_shown"
    DATABASE_STOPPED = "database.stopped"
    BACKUP_CREATED = "backup.created"  # kind, id, sizes; a tenant backup also in that tenant's chain
    BACKUP_LISTED = "backup.listed"
    BACKUP_DRILLED = "backup.drilled"  # outcome failed when any step failed
    BACKUP_DRILLS_LISTED = "backup.drills_listed"
    BACKUP_RESTORED = "backup.restored"  # which backup, into which database
    BACKUP_REMOVED = "backup.removed"  # expired under retention
    # Offboarding (backup/offboarding.py): each step in the platform chain, the notices in the institution's.
    OFFBOARDING_REQUESTED = "offboarding.requested"
    OFFBOARDING_APPROVED = "offboarding.approved"
    OFFBOARDING_EXPORTED = "offboarding.exported"  # the final export made, its link mailed
    OFFBOARDING_EXPORT_DOWNLOADED = "offboarding.export_downloaded"
    OFFBOARDING_CANCELLED = "offboarding.cancelled"
    OFFBOARDING_KEYS_DESTROYED = "offboarding.keys_destroyed"
    OFFBOARDING_ROWS_DELETED = "offboarding.rows_deleted"  # per table counts
    OFFBOARDING_FILES_WIPED = "offboarding.files_wiped"  # method, files, bytes
    OFFBOARDING_CERTIFIED = "offboarding.certified"  # the certificate of destruction issued
    OFFBOARDING_LISTED = "offboarding.listed"
    OFFBOARDING_CERTIFICATE_READ = "offboarding.certificate_read"
    # Host checks (monitor/fim, monitor/rootcheck): counts and paths of the platform's own files, never data.
    FIM_BASELINE_PROPOSED = "fim.baseline_proposed"  # scanned and signed, waiting for a second operator
    FIM_BASELINE_APPROVED = "fim.baseline_approved"  # the second operator's approval: scans compare with it now
    FIM_BASELINE_REJECTED = "fim.baseline_rejected"
    FIM_SCANNED = "fim.scanned"  # counts of files, re-hashed files and findings; outcome failed when any
    FIM_STATUS_VIEWED = "fim.status_viewed"
    ROOTCHECK_RAN = "rootcheck.ran"  # counts of findings by kind; outcome failed when any
    # Active response (monitor/response/): the address is in the block's row, never in the event.
    ADDRESS_BLOCKED = "monitor.address_blocked"  # by a jail (actor system) or an operator; block id, rule, until
    ADDRESS_UNBLOCKED = "monitor.address_unblocked"  # by an operator, before its time
    ADDRESS_BLOCK_EXPIRED = "monitor.address_block_expired"  # its bantime ran out (the expiry job)
    ADDRESS_BLOCKS_LISTED = "monitor.address_blocks_listed"
    BLOCK_HOOK_RAN = "monitor.block_hook_ran"  # the configured command; failed when it exited non-zero or timed out
    SESSIONS_REVOKED_BY_MONITOR = "monitor.sessions_revoked"  # every session of an account, on a rule's alert
    # Incidents (incidents/): every action on one is a line of its timeline and an event of the platform's chain;
    # what concerns an institution (its impact, subjects, notices) is also an event of that institution's chain.
    INCIDENT_OPENED = "incident.opened"  # source, severity; from a report also in the institution's chain
    INCIDENT_LISTED = "incident.listed"
    INCIDENT_VIEWED = "incident.viewed"
    INCIDENT_ASSIGNED = "incident.assigned"
    INCIDENT_TRIAGED = "incident.triaged"  # severity, category, institutions and subjects (counts)
    INCIDENT_ADVANCED = "incident.advanced"  # contained, eradicated or recovered
    INCIDENT_CLOSED = "incident.closed"  # with its post-incident review
    INCIDENT_NOTED = "incident.noted"  # a note, or an automatic source seen again
    INCIDENT_ESCALATED = "incident.escalated"  # not triaged in its severity's time: one per step
    INCIDENT_CISO_NOTIFIED = "incident.ciso_notified"
    INCIDENT_AFFECTED = "incident.affected"  # in an institution's chain: the incident concerns it (subjects: count)
    BREACH_MARKED = "breach.marked"  # a personal-data breach: the scope found, the clocks started
    BREACH_NOTIFIED = "breach.notified"  # a notice sent (institution or patrons), or prepared
    BREACH_NOT_NOTIFIED = "breach.not_notified"  # a decision not to notify, with its reason (sealed)
    BREACH_ACKNOWLEDGED = "breach.acknowledged"  # the institution acknowledged receipt of its notice
    BREACH_REMINDED = "breach.reminded"  # the institution reminded to acknowledge its notice (one per reminder)
    # The trail itself.
    AUDIT_SEARCHED = "audit.searched"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_VERIFIED = "audit.verified"
    AUDIT_CHECKPOINTED = "audit.checkpointed"
    AUDIT_SEGMENT_DROPPED = "audit.segment_dropped"
    AUDIT_PROVED = "audit.proved"  # an inclusion or consistency proof handed out
    AUDIT_KEY_VIEWED = "audit.key_viewed"  # the checkpoint public key printed
    USAGE_REPORTED = "usage.reported"
    # Security alerts (monitor/alerts): read by operators and institutions, handled by operators.
    ALERT_LISTED = "alert.listed"
    ALERT_VIEWED = "alert.viewed"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    ALERT_CLOSED = "alert.closed"
    # Monthly security reports and live evidence (reports/): built (read), mailed to the designated contacts.
    SECURITY_REPORT_BUILT = "security_report.built"
    SECURITY_REPORT_MAILED = "security_report.mailed"
    EVIDENCE_BUILT = "evidence.built"  # every control checked now, signed; the failing ones named


Detail = str | int | bool | None | list[str | int | bool | None]


@dataclass(frozen=True)
class Event:
    """One audit event as recorded, before the database gives it a place in the chain."""

    id: UUID
    occurred_at: datetime
    actor_kind: str
    actor_id: UUID | None
    grant_id: UUID | None
    action: str
    target_kind: str | None
    target_id: UUID | None
    outcome: str
    source_address: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Detail] = field(default_factory=dict)
    format: int = FORMAT_HASHED_CONTEXT
    # Format 2 with an address or a user agent: the event's own key and the commitment made with it.
    commitment_key: bytes | None = None
    context_commitment: bytes | None = None

    @property
    def has_context(self) -> bool:
        return self.source_address is not None or self.user_agent is not None

    def body(self) -> dict[str, Any]:
        """The hashed fields as JSON values (ids and the time as text): every field but the event's place in
        the chain. Format 2 hashes the commitment to the address and user agent, format 1 the values."""
        body: dict[str, Any] = {
            "id": str(self.id),
            "occurred_at": _plain(self.occurred_at),
            "actor_kind": self.actor_kind,
            "actor_id": _plain(self.actor_id),
            "grant_id": _plain(self.grant_id),
            "action": self.action,
            "target_kind": self.target_kind,
            "target_id": _plain(self.target_id),
            "outcome": self.outcome,
            "request_id": self.request_id,
            "details": self.details,
        }
        if self.format == FORMAT_CONTEXT_APART:
            body["context_commitment"] = self.context_commitment.hex() if self.context_commitment is not None else None
        else:
            body["source_address"] = self.source_address
            body["user_agent"] = self.user_agent
        return body

    def canonical(self) -> bytes:
        return encode_body(self.body())

    def body_digest(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()


def encode_body(body: dict[str, Any]) -> bytes:
    """The bytes hashed for an event (`Event.body()`: every field but its place in the chain, as plain JSON
    values), in one fixed form.

    The pre-JCS form (ASCII escapes), not RFC 8785: every stored body digest, and so every chain hash and
    signed checkpoint, was computed over it. The fast encoder drafts it (every event is encoded on the
    request path): it writes the same bytes whenever they are ASCII without DEL and hold no float, which
    `check_details` refuses; any other body (non-ASCII text, DEL, an integer past 64 bits, a str subclass)
    is encoded by the reference encoder.
    """
    try:
        draft = ascii_sorted_json_fast(body)
    except (msgspec.EncodeError, TypeError):  # e.g. a str subclass msgspec refuses; json writes it as text
        return ascii_sorted_json(body)
    return draft if draft.isascii() and b"\x7f" not in draft else ascii_sorted_json(body)


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def context_commitment(key: bytes, source_address: str | None, user_agent: str | None) -> bytes:
    """What a format 2 event hashes in place of its address and user agent (keyed by the event's own key)."""
    message = canonical_json({"source_address": source_address, "user_agent": user_agent})
    return hmac.new(key, message, hashlib.sha256).digest()


def new_commitment_key() -> bytes:
    return os.urandom(COMMITMENT_KEY_BYTES)


def chain_hash(prev_hash: bytes, seq: int, body_digest: bytes) -> bytes:
    """The chain link computed by the database on append, recomputed here by every verifier."""
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big", signed=True) + body_digest).digest()


def check_details(details: dict[str, Any]) -> dict[str, Detail]:
    """Details as the canonical encoding can reproduce them: ids become strings; floats, objects
    and bytes are refused (they would hash differently after a trip through PostgreSQL)."""
    checked: dict[str, Detail] = {}
    for key, value in details.items():
        items = [_detail(key, item) for item in (value if isinstance(value, list | tuple) else [value])]
        checked[key] = items if isinstance(value, list | tuple) else items[0]
    return checked


def _detail(key: str, item: Any) -> str | int | bool | None:
    if isinstance(item, UUID | enum.Enum):
        item = str(item.value if isinstance(item, enum.Enum) else item)
    if item is not None and not isinstance(item, str | int | bool):
        raise TypeError(f"audit detail {key!r} must be a string, integer, boolean or null (or a list of them)")
    if isinstance(item, str):
        if "\x00" in item:
            raise ValueError(f"audit detail {key!r} contains a NUL character")
        item = str.__str__(item)  # plain text: a subclass (an SQL column name) encodes as text alike, faster
    return item
