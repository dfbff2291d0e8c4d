"""The catalogue of permissions and the built-in roles that bundle them.

A permission names one kind of act on one kind of thing. Every route declares exactly one
(tested), and `authorize()` is the one place that compares it with what the caller holds.
Least privilege: a new custom role holds nothing until permissions are granted to it.
"""

from __future__ import annotations

import enum


class Permission(enum.StrEnum):
    # The hosted domain.
    PATRONS_READ = "patrons.read"
    PATRONS_WRITE = "patrons.write"
    PATRONS_EXPORT = "patrons.export"
    LOANS_READ = "loans.read"
    LOANS_WRITE = "loans.write"
    SEARCHES_READ = "searches.read"
    SEARCHES_WRITE = "searches.write"
    READING_LISTS_READ = "reading_lists.read"
    READING_LISTS_WRITE = "reading_lists.write"
    POSTS_READ = "posts.read"
    POSTS_WRITE = "posts.write"
    # Running the institution's side.
    ACCOUNTS_READ = "accounts.read"
    ACCOUNTS_MANAGE = "accounts.manage"
    ROLES_READ = "roles.read"
    ROLES_MANAGE = "roles.manage"
    ROLES_ASSIGN = "roles.assign"
    TOKENS_MANAGE = "tokens.manage"
    POLICY_MANAGE = "policy.manage"
    SSO_MANAGE = "sso.manage"  # the institution's identity provider: who signs in, with which roles
    SECURITY_CONTACTS_MANAGE = "security_contacts.manage"
    AUDIT_READ = "audit.read"
    # Verify the trail's chain and take its proofs and evidence bundles: the independent auditor's duty,
    # kept apart from running the controls the trail records (access/roles/sod.py).
    AUDIT_VERIFY = "audit.verify"
    PRIVACY_REQUESTS_HANDLE = "privacy.requests.handle"
    PRIVACY_REQUESTS_REGISTER = "privacy.requests.register"  # take a data-subject request on a patron's behalf
    PRIVACY_ERASURE_APPROVE = "privacy.erasure.approve"
    PRIVACY_RECORDS_READ = "privacy.records.read"  # records of processing: categories, purposes, no data
    PRIVACY_COMPLAINTS_REGISTER = "privacy.complaints.register"  # take a complaint on a patron's behalf
    PRIVACY_COMPLAINTS_HANDLE = "privacy.complaints.handle"  # read, answer and follow complaints
    PRIVACY_RETENTION_MANAGE = "privacy.retention.manage"  # keep-for periods (asked, approved), purge reports
    PRIVACY_HOLDS_MANAGE = "privacy.holds.manage"  # place and lift legal holds
    PRIVACY_PREFERENCES_MANAGE = "privacy.preferences.manage"  # a patron's preferences and consents, on their behalf
    PRIVACY_DISCLOSURES_MANAGE = "privacy.disclosures.manage"  # record and list disclosures to third parties
    PRIVACY_NOTICE_MANAGE = "privacy.notice.manage"  # publish versions of the institution's privacy notice
    # Read reports of suspected unauthorised access to an account, or that a child's data is held.
    PRIVACY_CONCERNS_HANDLE = "privacy.concerns.handle"
    MAILINGS_SEND = "mailings.send"  # optional mail (newsletters, events...) to the patrons who agreed to it
    # Anonymized publisher reports: releasing them, loading the catalogue they join, their privacy rules.
    REPORTS_PUBLISHERS = "reports.publishers"  # release and read anonymized usage reports for publishers
    REPORTS_CATALOGUE_MANAGE = "reports.catalogue.manage"  # load titles and publishers of items
    REPORTS_POLICY_MANAGE = "reports.policy.manage"  # k, noise, epsilon per report, publishers' budgets
    OPERATOR_GRANTS_APPROVE = "operator_grants.approve"
    ALERTS_READ = "alerts.read"  # the security alerts that concern the institution (monitor/alerts)
    # Security incidents that affect the institution: read them, their breach clocks and notices
    # (incidents/); decide on or ask for the notices to its affected patrons (maker-checker).
    INCIDENTS_READ = "incidents.read"
    INCIDENTS_NOTIFY = "incidents.notify"
    # The institution's monthly security report and live evidence of every promise: counts and control
    # statuses, no personal data (reports/).
    REPORTS_SECURITY_READ = "reports.security.read"
    # The patron's own data, through the privacy portal.
    SELF_SERVICE = "self.service"
    # The platform (operator staff); none of these reaches a tenant's data.
    PLATFORM_TENANTS_MANAGE = "platform.tenants.manage"
    # Ask for, approve (another person), run and cancel an institution's offboarding: its data destroyed.
    PLATFORM_TENANTS_OFFBOARD = "platform.tenants.offboard"
    PLATFORM_GRANTS_REQUEST = "platform.grants.request"
    PLATFORM_GRANTS_BREAK_GLASS = "platform.grants.break_glass"
    PLATFORM_INCIDENTS_HANDLE = "platform.incidents.handle"
    PLATFORM_PRIVACY_OVERSIGHT = "platform.privacy.oversight"
    PLATFORM_USAGE_READ = "platform.usage.read"  # usage reports for charges: counts and sizes, no data
    PLATFORM_BACKUPS_READ = "platform.backups.read"  # the backup catalogue and drill history: no data
    PLATFORM_BACKUPS_MANAGE = "platform.backups.manage"  # take backups, run drills, remove expired ones
    PLATFORM_BACKUPS_RESTORE = "platform.backups.restore"  # restore a backup into a database for real
    PLATFORM_BLOCKS_READ = "platform.blocks.read"  # blocked source addresses (active response): no tenant data
    PLATFORM_BLOCKS_MANAGE = "platform.blocks.manage"  # block and unblock source addresses
    # The platform console (bookwarden CLI): each command declares one of these (or another above).
    PLATFORM_DATABASE_MANAGE = "platform.database.manage"
    PLATFORM_TOKENS_ISSUE = "platform.tokens.issue"
    PLATFORM_OPERATORS_MANAGE = "platform.operators.manage"  # operator accounts: create, disable, enable
    PLATFORM_KEYS_ROTATE = "platform.keys.rotate"
    PLATFORM_SERVICES_RUN = "platform.services.run"
    PLATFORM_DEMO_SEED = "platform.demo.seed"
    # Check every chain's integrity (hashes, signed checkpoints, proofs, the signing key): never an
    # event's content, which is the institution's (audit.read / audit.verify, through a grant).
    PLATFORM_AUDIT_VERIFY = "platform.audit.verify"
    # Security alerts of every institution and of the platform: read; acknowledge and close.
    PLATFORM_ALERTS_READ = "platform.alerts.read"
    PLATFORM_ALERTS_MANAGE = "platform.alerts.manage"
    # Host checks: file integrity and rootcheck. Read: run scans and checks, see their results; manage: propose
    # and approve (a second operator) the file-integrity baseline.
    PLATFORM_FIM_READ = "platform.fim.read"
    PLATFORM_FIM_MANAGE = "platform.fim.manage"
    # Security reports and live evidence, of the platform or of one institution: counts and control statuses.
    PLATFORM_REPORTS_READ = "platform.reports.read"

    @property
    def is_platform(self) -> bool:
        return self.value.startswith("platform.")


P = Permission
TENANT_PERMISSIONS = frozenset(p for p in Permission if not p.is_platform)
PLATFORM_PERMISSIONS = frozenset(p for p in Permission if p.is_platform)
LIBRARY_READ = frozenset({P.PATRONS_READ, P.LOANS_READ, P.SEARCHES_READ, P.READING_LISTS_READ, P.POSTS_READ})
LIBRARY_WRITE = frozenset({P.PATRONS_WRITE, P.LOANS_WRITE, P.SEARCHES_WRITE, P.READING_LISTS_WRITE, P.POSTS_WRITE})


class BuiltinRole(enum.StrEnum):
    PATRON = "patron"
    CIRCULATION_STAFF = "circulation_staff"
    PRIVACY_OFFICER = "privacy_officer"
    TENANT_ADMIN = "tenant_admin"
    SECURITY_OFFICER = "security_officer"
    AUDITOR = "auditor"
    OPERATOR_SUPPORT = "operator_support"
    OPERATOR_OPS = "operator_ops"
    CISO = "ciso"
    DPO = "dpo"

    @property
    def is_platform(self) -> bool:
        return self in PLATFORM_ROLES


PLATFORM_ROLES = frozenset({BuiltinRole.OPERATOR_SUPPORT, BuiltinRole.OPERATOR_OPS, BuiltinRole.CISO, BuiltinRole.DPO})

BUILTIN_PERMISSIONS: dict[BuiltinRole, frozenset[Permission]] = {
    BuiltinRole.PATRON: frozenset({P.SELF_SERVICE}),
    BuiltinRole.CIRCULATION_STAFF: LIBRARY_READ
    | {
        P.PATRONS_WRITE,
        P.LOANS_WRITE,
        P.PRIVACY_COMPLAINTS_REGISTER,
        P.PRIVACY_PREFERENCES_MANAGE,
        P.PRIVACY_REQUESTS_REGISTER,
    },
    BuiltinRole.PRIVACY_OFFICER: LIBRARY_READ
    | {
        P.PRIVACY_REQUESTS_HANDLE,
        P.PRIVACY_ERASURE_APPROVE,
        P.PRIVACY_REQUESTS_REGISTER,
        P.PATRONS_EXPORT,
        # The approvals queue (where a colleague's bulk export waits for this officer) names accounts.
        P.ACCOUNTS_READ,
        P.AUDIT_READ,
        P.PRIVACY_RECORDS_READ,
        P.PRIVACY_COMPLAINTS_REGISTER,
        P.PRIVACY_COMPLAINTS_HANDLE,
        # Retention and legal holds: what is kept, for how long, and what must not go yet.
        P.PRIVACY_RETENTION_MANAGE,
        P.PRIVACY_HOLDS_MANAGE,
        P.PRIVACY_PREFERENCES_MANAGE,
        P.PRIVACY_DISCLOSURES_MANAGE,
        # What patrons are told (the privacy notice) and what they report back (concerns).
        P.PRIVACY_NOTICE_MANAGE,
        P.PRIVACY_CONCERNS_HANDLE,
        # Publisher reports are the officer's call: how anonymous (k, noise, budgets) and what leaves.
        P.REPORTS_PUBLISHERS,
        P.REPORTS_POLICY_MANAGE,
        # A breach that affects the institution, and the notices to its affected patrons (incidents/).
        P.INCIDENTS_READ,
        P.INCIDENTS_NOTIFY,
    },
    # The admin runs accounts and roles, so cannot also verify the trail (audit.verify: see sod.py). Reading
    # the trail is allowed: an admin investigating an incident needs it, and reading changes nothing
    # (the trail is append-only and chained; evidence bundles and verification stay the auditor's view).
    BuiltinRole.TENANT_ADMIN: LIBRARY_READ
    | LIBRARY_WRITE
    | {
        P.ACCOUNTS_READ,
        P.ACCOUNTS_MANAGE,
        P.ROLES_READ,
        P.ROLES_MANAGE,
        P.ROLES_ASSIGN,
        P.TOKENS_MANAGE,
        P.POLICY_MANAGE,
        P.SSO_MANAGE,
        P.SECURITY_CONTACTS_MANAGE,
        P.OPERATOR_GRANTS_APPROVE,
        P.PRIVACY_RECORDS_READ,
        P.AUDIT_READ,
        P.MAILINGS_SEND,
        P.REPORTS_CATALOGUE_MANAGE,
        P.ALERTS_READ,
        P.INCIDENTS_READ,
        P.REPORTS_SECURITY_READ,
    },
    BuiltinRole.SECURITY_OFFICER: frozenset(
        {
            P.ACCOUNTS_READ,
            P.ROLES_READ,
            P.POLICY_MANAGE,
            P.SECURITY_CONTACTS_MANAGE,
            P.AUDIT_READ,
            # A report of suspected unauthorised access to an account is a security matter too.
            P.PRIVACY_CONCERNS_HANDLE,
            P.ALERTS_READ,
            P.INCIDENTS_READ,
            P.INCIDENTS_NOTIFY,
            P.REPORTS_SECURITY_READ,
        }
    ),
    BuiltinRole.AUDITOR: frozenset(
        {P.AUDIT_READ, P.AUDIT_VERIFY, P.ACCOUNTS_READ, P.ROLES_READ, P.REPORTS_SECURITY_READ}
    ),
    BuiltinRole.OPERATOR_SUPPORT: frozenset({P.PLATFORM_GRANTS_REQUEST}),
    # Running the platform, at the console too (console.py: the console acts as the operator account its
    # OS user is mapped to, with that account's role): none of these reaches a tenant's data.
    BuiltinRole.OPERATOR_OPS: frozenset(
        {
            P.PLATFORM_TENANTS_MANAGE,
            P.PLATFORM_GRANTS_REQUEST,
            P.PLATFORM_USAGE_READ,
            P.PLATFORM_DATABASE_MANAGE,
            P.PLATFORM_SERVICES_RUN,
            P.PLATFORM_KEYS_ROTATE,
            P.PLATFORM_TOKENS_ISSUE,
            P.PLATFORM_AUDIT_VERIFY,
            P.PLATFORM_DEMO_SEED,
            P.PLATFORM_BACKUPS_READ,
            P.PLATFORM_BACKUPS_MANAGE,
            P.PLATFORM_TENANTS_OFFBOARD,
            P.PLATFORM_ALERTS_READ,
            P.PLATFORM_ALERTS_MANAGE,
            P.PLATFORM_FIM_READ,
            P.PLATFORM_FIM_MANAGE,
            P.PLATFORM_BLOCKS_READ,
            P.PLATFORM_BLOCKS_MANAGE,
            # Ops are on call: they triage and work incidents with the CISO (the incident-handling team).
            P.PLATFORM_INCIDENTS_HANDLE,
            P.PLATFORM_REPORTS_READ,
        }
    ),
    # Staff accounts are the CISO's to run (who may ask for grants, who may break glass), not ops'; so is a
    # real restore, which writes every institution's data into a new database (ops take backups and drill).
    BuiltinRole.CISO: frozenset(
        {
            P.PLATFORM_GRANTS_BREAK_GLASS,
            P.PLATFORM_INCIDENTS_HANDLE,
            P.PLATFORM_OPERATORS_MANAGE,
            P.PLATFORM_AUDIT_VERIFY,
            P.PLATFORM_BACKUPS_READ,
            P.PLATFORM_BACKUPS_RESTORE,
            # The second person of an offboarding ops asked (or the first, approved by ops).
            P.PLATFORM_TENANTS_OFFBOARD,
            P.PLATFORM_ALERTS_READ,
            P.PLATFORM_ALERTS_MANAGE,
            P.PLATFORM_FIM_READ,
            P.PLATFORM_FIM_MANAGE,
            P.PLATFORM_BLOCKS_READ,
            P.PLATFORM_BLOCKS_MANAGE,
            P.PLATFORM_REPORTS_READ,
        }
    ),
    BuiltinRole.DPO: frozenset({P.PLATFORM_PRIVACY_OVERSIGHT}),
}

# How powerful a role or an account is (maker-checker on grants, the second factor, the password floor,
# notices never muted) is decided from these permissions in access/power.py, never from a role's name.
