"""One table of the permission every operation of the API needs, and proof that each write refuses a
read-only credential.

The table is kept by hand on purpose: changing what a route demands means changing this line too, in
review (a DELETE that demanded only the read permission was once caught by an unrelated test by
luck). `None`: an open route, or one that needs only a sign-in (the caller's own factors, sessions).
"""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from bookwarden.api.app import create_app
from bookwarden.core.config import Settings
from bookwarden.core.permissions import PLATFORM_PERMISSIONS, TENANT_PERMISSIONS
from bookwarden.core.permissions import Permission as P
from bookwarden.db.session import platform_session
from bookwarden.identity.tokens import service as tokens
from tests.helpers import fresh_address
from tests.invariants.test_security_headers import _routes, _url

EXPECTED = {
    ("GET", "/api/v1/accounts"): P.ACCOUNTS_READ,
    ("POST", "/api/v1/accounts"): P.ACCOUNTS_MANAGE,
    ("DELETE", "/api/v1/accounts/{account_id}"): P.ACCOUNTS_MANAGE,
    ("GET", "/api/v1/accounts/{account_id}"): P.ACCOUNTS_READ,
    ("POST", "/api/v1/accounts/{account_id}/disable"): P.ACCOUNTS_MANAGE,
    ("POST", "/api/v1/accounts/{account_id}/enable"): P.ACCOUNTS_MANAGE,
    ("POST", "/api/v1/accounts/{account_id}/invitation"): P.ACCOUNTS_MANAGE,
    ("POST", "/api/v1/accounts/{account_id}/mfa-enrolment-link"): P.ACCOUNTS_MANAGE,
    ("POST", "/api/v1/accounts/{account_id}/mfa-reset"): P.ACCOUNTS_MANAGE,
    ("POST", "/api/v1/accounts/{account_id}/password-reset"): P.ACCOUNTS_MANAGE,
    ("GET", "/api/v1/accounts/{account_id}/roles"): P.ROLES_READ,
    ("POST", "/api/v1/accounts/{account_id}/roles"): P.ROLES_ASSIGN,
    ("DELETE", "/api/v1/accounts/{account_id}/roles/{role}"): P.ROLES_ASSIGN,
    ("GET", "/api/v1/approvals"): P.ACCOUNTS_READ,
    ("POST", "/api/v1/approvals/{record_id}/approve"): P.ACCOUNTS_READ,
    ("POST", "/api/v1/approvals/{record_id}/reject"): P.ACCOUNTS_READ,
    ("GET", "/api/v1/audit/events"): P.AUDIT_READ,
    ("GET", "/api/v1/audit/events/export"): P.AUDIT_READ,
    ("POST", "/api/v1/auth/accept-invitation"): None,
    ("POST", "/api/v1/auth/login"): None,
    ("POST", "/api/v1/auth/logout"): None,
    ("POST", "/api/v1/auth/logout-everywhere"): None,
    ("GET", "/api/v1/auth/me"): None,
    ("POST", "/api/v1/auth/me/mfa/recovery-codes"): None,
    ("DELETE", "/api/v1/auth/me/mfa/totp"): None,
    ("POST", "/api/v1/auth/me/mfa/totp"): None,
    ("POST", "/api/v1/auth/me/mfa/totp/confirm"): None,
    ("GET", "/api/v1/auth/me/mfa/webauthn/credentials"): None,
    ("POST", "/api/v1/auth/me/mfa/webauthn/credentials"): None,
    ("DELETE", "/api/v1/auth/me/mfa/webauthn/credentials/{key_id}"): None,
    ("PATCH", "/api/v1/auth/me/mfa/webauthn/credentials/{key_id}"): None,
    ("POST", "/api/v1/auth/me/mfa/webauthn/options"): None,
    ("POST", "/api/v1/auth/mfa"): None,
    ("POST", "/api/v1/auth/mfa-enrolment"): None,
    ("POST", "/api/v1/auth/mfa-enrolment/confirm"): None,
    ("POST", "/api/v1/auth/mfa/webauthn"): None,
    ("POST", "/api/v1/auth/mfa/webauthn/options"): None,
    ("POST", "/api/v1/auth/password-reset"): None,
    ("POST", "/api/v1/auth/reset-password"): None,
    ("GET", "/api/v1/loans"): P.LOANS_READ,
    ("GET", "/api/v1/me/posts"): P.SELF_SERVICE,
    ("DELETE", "/api/v1/me/posts/{post_id}"): P.SELF_SERVICE,
    ("POST", "/api/v1/loans"): P.LOANS_WRITE,
    ("DELETE", "/api/v1/loans/{record_id}"): P.LOANS_WRITE,
    ("GET", "/api/v1/loans/{record_id}"): P.LOANS_READ,
    ("PATCH", "/api/v1/loans/{record_id}"): P.LOANS_WRITE,
    ("GET", "/api/v1/operator-grants"): P.OPERATOR_GRANTS_APPROVE,
    ("POST", "/api/v1/operator-grants/{record_id}/approve"): P.OPERATOR_GRANTS_APPROVE,
    ("POST", "/api/v1/operator-grants/{record_id}/deny"): P.OPERATOR_GRANTS_APPROVE,
    ("POST", "/api/v1/operator-grants/{record_id}/revoke"): P.OPERATOR_GRANTS_APPROVE,
    ("POST", "/api/v1/operator/auth/enrolment"): None,
    ("POST", "/api/v1/operator/auth/enrolment/complete"): None,
    ("POST", "/api/v1/operator/auth/login"): None,
    ("POST", "/api/v1/operator/auth/logout"): None,
    ("GET", "/api/v1/operator/auth/me"): None,
    ("POST", "/api/v1/operator/auth/mfa"): None,
    ("POST", "/api/v1/operator/grants"): P.PLATFORM_GRANTS_REQUEST,
    ("POST", "/api/v1/operator/grants/{tenant_id}/{grant_id}/break-glass"): P.PLATFORM_GRANTS_BREAK_GLASS,
    ("GET", "/api/v1/operator/privacy/escalations"): P.PLATFORM_PRIVACY_OVERSIGHT,
    ("POST", "/api/v1/operator/privacy/escalations/{tenant_id}/{escalation_id}/acknowledge"): (
        P.PLATFORM_PRIVACY_OVERSIGHT
    ),
    ("GET", "/api/v1/operator/tenants"): P.PLATFORM_TENANTS_MANAGE,
    ("POST", "/api/v1/operator/tenants"): P.PLATFORM_TENANTS_MANAGE,
    ("GET", "/api/v1/operator/tenants/{tenant_id}"): P.PLATFORM_TENANTS_MANAGE,
    ("POST", "/api/v1/operator/tenants/{tenant_id}/resume"): P.PLATFORM_TENANTS_MANAGE,
    ("POST", "/api/v1/operator/tenants/{tenant_id}/suspend"): P.PLATFORM_TENANTS_MANAGE,
    ("GET", "/api/v1/operator/usage"): P.PLATFORM_USAGE_READ,
    ("GET", "/api/v1/operator/backups"): P.PLATFORM_BACKUPS_READ,
    ("GET", "/api/v1/operator/backups/drills"): P.PLATFORM_BACKUPS_READ,
    ("POST", "/api/v1/operator/tenants/{tenant_id}/offboarding"): P.PLATFORM_TENANTS_OFFBOARD,
    ("GET", "/api/v1/operator/offboardings"): P.PLATFORM_TENANTS_OFFBOARD,
    ("POST", "/api/v1/operator/offboardings/{offboarding_id}/approve"): P.PLATFORM_TENANTS_OFFBOARD,
    ("POST", "/api/v1/operator/offboardings/{offboarding_id}/cancel"): P.PLATFORM_TENANTS_OFFBOARD,
    ("GET", "/api/v1/operator/offboardings/{offboarding_id}/certificate"): P.PLATFORM_TENANTS_OFFBOARD,
    ("GET", "/api/v1/offboarding/export/{token}"): None,
    # Security alerts (monitor/alerts): operators read and handle every one; an institution reads its own.
    ("GET", "/api/v1/operator/alerts"): P.PLATFORM_ALERTS_READ,
    ("GET", "/api/v1/operator/alerts/{alert_id}"): P.PLATFORM_ALERTS_READ,
    ("POST", "/api/v1/operator/alerts/{alert_id}/acknowledge"): P.PLATFORM_ALERTS_MANAGE,
    ("POST", "/api/v1/operator/alerts/{alert_id}/close"): P.PLATFORM_ALERTS_MANAGE,
    ("GET", "/api/v1/alerts"): P.ALERTS_READ,
    ("GET", "/api/v1/alerts/{alert_id}"): P.ALERTS_READ,
    # Monthly security reports and live evidence (reports/): an institution's own, or the platform's.
    ("GET", "/api/v1/reports/security"): P.REPORTS_SECURITY_READ,
    ("GET", "/api/v1/evidence"): P.REPORTS_SECURITY_READ,
    ("GET", "/api/v1/operator/reports/security"): P.PLATFORM_REPORTS_READ,
    ("GET", "/api/v1/operator/evidence"): P.PLATFORM_REPORTS_READ,
    ("PUT", "/api/v1/password-policies/admin"): P.POLICY_MANAGE,
    ("PUT", "/api/v1/password-policies/patron"): P.POLICY_MANAGE,
    ("PUT", "/api/v1/password-policies/staff"): P.POLICY_MANAGE,
    ("GET", "/api/v1/patrons"): P.PATRONS_READ,
    ("POST", "/api/v1/patrons"): P.PATRONS_WRITE,
    ("POST", "/api/v1/patrons/exports"): P.PATRONS_EXPORT,
    ("GET", "/api/v1/patrons/exports/{approval_id}"): P.PATRONS_EXPORT,
    ("POST", "/api/v1/patrons/lookup"): P.PATRONS_READ,
    ("DELETE", "/api/v1/patrons/{record_id}"): P.PATRONS_WRITE,
    ("POST", "/api/v1/patrons/{patron_id}/deletion/confirm"): P.PATRONS_WRITE,
    ("POST", "/api/v1/patrons/{patron_id}/deletion/undo"): P.PATRONS_WRITE,
    ("GET", "/api/v1/patrons/{record_id}"): P.PATRONS_READ,
    ("PATCH", "/api/v1/patrons/{record_id}"): P.PATRONS_WRITE,
    ("GET", "/api/v1/portal/{tenant_slug}/cookie-choice"): None,
    ("PUT", "/api/v1/portal/{tenant_slug}/cookie-choice"): None,
    ("GET", "/api/v1/portal/{tenant_slug}/privacy-notice"): None,
    ("GET", "/api/v1/posts"): P.POSTS_READ,
    ("POST", "/api/v1/posts"): P.POSTS_WRITE,
    ("DELETE", "/api/v1/posts/{record_id}"): P.POSTS_WRITE,
    ("GET", "/api/v1/posts/{record_id}"): P.POSTS_READ,
    ("PATCH", "/api/v1/posts/{record_id}"): P.POSTS_WRITE,
    ("GET", "/api/v1/privacy/complaints"): P.PRIVACY_COMPLAINTS_HANDLE,
    ("POST", "/api/v1/privacy/complaints"): P.PRIVACY_COMPLAINTS_REGISTER,
    ("GET", "/api/v1/privacy/complaints/{complaint_id}"): P.PRIVACY_COMPLAINTS_HANDLE,
    ("POST", "/api/v1/privacy/complaints/{complaint_id}/answer"): P.PRIVACY_COMPLAINTS_HANDLE,
    ("GET", "/api/v1/privacy/concerns"): P.PRIVACY_CONCERNS_HANDLE,
    ("POST", "/api/v1/privacy/concerns/form"): None,
    ("GET", "/api/v1/privacy/concerns/{concern_id}"): P.PRIVACY_CONCERNS_HANDLE,
    ("GET", "/api/v1/privacy/disclosure-policy"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("PUT", "/api/v1/privacy/disclosure-policy/{kind}"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("GET", "/api/v1/privacy/disclosures"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("POST", "/api/v1/privacy/disclosures"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("GET", "/api/v1/privacy/disclosures/{disclosure_id}"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("POST", "/api/v1/privacy/erasure-certificates/verify"): P.PRIVACY_REQUESTS_HANDLE,
    ("GET", "/api/v1/privacy/erasure-certificates/{certificate_id}"): P.PRIVACY_REQUESTS_HANDLE,
    ("GET", "/api/v1/privacy/erasure-policy"): P.POLICY_MANAGE,
    ("PUT", "/api/v1/privacy/erasure-policy"): P.POLICY_MANAGE,
    ("GET", "/api/v1/privacy/holds"): P.PRIVACY_HOLDS_MANAGE,
    ("POST", "/api/v1/privacy/holds"): P.PRIVACY_HOLDS_MANAGE,
    ("POST", "/api/v1/privacy/holds/{hold_id}/lift"): P.PRIVACY_HOLDS_MANAGE,
    ("POST", "/api/v1/privacy/inquiries/forward"): None,
    ("POST", "/api/v1/privacy/mailings"): P.MAILINGS_SEND,
    ("GET", "/api/v1/privacy/me/complaints"): P.SELF_SERVICE,
    ("POST", "/api/v1/privacy/me/complaints"): P.SELF_SERVICE,
    ("POST", "/api/v1/privacy/me/concerns"): P.SELF_SERVICE,
    ("GET", "/api/v1/privacy/me/consents"): P.SELF_SERVICE,
    ("GET", "/api/v1/privacy/me/cookie-choice"): P.SELF_SERVICE,
    ("PUT", "/api/v1/privacy/me/cookie-choice"): P.SELF_SERVICE,
    ("GET", "/api/v1/privacy/me/disclosures"): P.SELF_SERVICE,
    ("GET", "/api/v1/privacy/me/preferences"): P.SELF_SERVICE,
    ("PUT", "/api/v1/privacy/me/preferences"): P.SELF_SERVICE,
    ("GET", "/api/v1/privacy/me/requests"): P.SELF_SERVICE,
    ("POST", "/api/v1/privacy/me/requests"): P.SELF_SERVICE,
    ("GET", "/api/v1/privacy/patrons/{patron_id}/consents"): P.PRIVACY_PREFERENCES_MANAGE,
    ("GET", "/api/v1/privacy/patrons/{patron_id}/preferences"): P.PRIVACY_PREFERENCES_MANAGE,
    ("PUT", "/api/v1/privacy/patrons/{patron_id}/preferences"): P.PRIVACY_PREFERENCES_MANAGE,
    ("GET", "/api/v1/privacy/notice/versions"): P.PRIVACY_NOTICE_MANAGE,
    ("POST", "/api/v1/privacy/notice/versions"): P.PRIVACY_NOTICE_MANAGE,
    ("GET", "/api/v1/privacy/records-of-processing"): P.PRIVACY_RECORDS_READ,
    ("GET", "/api/v1/privacy/request-policy"): P.PRIVACY_REQUESTS_HANDLE,
    ("PUT", "/api/v1/privacy/request-policy"): P.PRIVACY_REQUESTS_HANDLE,
    ("GET", "/api/v1/privacy/requests"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/api/v1/privacy/requests"): P.PRIVACY_REQUESTS_REGISTER,
    ("POST", "/api/v1/privacy/requests/form"): None,
    ("POST", "/api/v1/privacy/requests/form/verify"): None,
    ("GET", "/api/v1/privacy/requests/{request_id}"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/api/v1/privacy/requests/{request_id}/complete"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/api/v1/privacy/requests/{request_id}/decision"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/api/v1/privacy/requests/{request_id}/hold"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/api/v1/privacy/requests/{request_id}/resume"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/api/v1/privacy/requests/{request_id}/start"): P.PRIVACY_REQUESTS_HANDLE,
    ("DELETE", "/api/v1/privacy/restrictions/{patron_id}"): P.PRIVACY_REQUESTS_HANDLE,
    ("GET", "/api/v1/privacy/retention/policies"): P.PRIVACY_RETENTION_MANAGE,
    ("PUT", "/api/v1/privacy/retention/policies/audit_segments"): P.PRIVACY_RETENTION_MANAGE,
    ("PUT", "/api/v1/privacy/retention/policies/exports"): P.PRIVACY_RETENTION_MANAGE,
    ("PUT", "/api/v1/privacy/retention/policies/inactive_patrons"): P.PRIVACY_RETENTION_MANAGE,
    ("PUT", "/api/v1/privacy/retention/policies/loan_history"): P.PRIVACY_RETENTION_MANAGE,
    ("PUT", "/api/v1/privacy/retention/policies/posts"): P.PRIVACY_RETENTION_MANAGE,
    ("PUT", "/api/v1/privacy/retention/policies/searches"): P.PRIVACY_RETENTION_MANAGE,
    ("GET", "/api/v1/privacy/retention/preview"): P.PRIVACY_RETENTION_MANAGE,
    ("GET", "/api/v1/privacy/retention/runs"): P.PRIVACY_RETENTION_MANAGE,
    ("GET", "/api/v1/privacy/retention/runs/{run_id}"): P.PRIVACY_RETENTION_MANAGE,
    ("POST", "/api/v1/privacy/subject-exports"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/api/v1/privacy/subject-exports/approvals"): P.PRIVACY_REQUESTS_HANDLE,
    ("GET", "/api/v1/privacy/subject-exports/download/{token}"): None,
    ("GET", "/api/v1/reading-list-items"): P.READING_LISTS_READ,
    ("POST", "/api/v1/reading-list-items"): P.READING_LISTS_WRITE,
    ("DELETE", "/api/v1/reading-list-items/{record_id}"): P.READING_LISTS_WRITE,
    ("GET", "/api/v1/reading-list-items/{record_id}"): P.READING_LISTS_READ,
    ("PATCH", "/api/v1/reading-list-items/{record_id}"): P.READING_LISTS_WRITE,
    ("GET", "/api/v1/reading-lists"): P.READING_LISTS_READ,
    ("POST", "/api/v1/reading-lists"): P.READING_LISTS_WRITE,
    ("DELETE", "/api/v1/reading-lists/{record_id}"): P.READING_LISTS_WRITE,
    ("GET", "/api/v1/reading-lists/{record_id}"): P.READING_LISTS_READ,
    ("PATCH", "/api/v1/reading-lists/{record_id}"): P.READING_LISTS_WRITE,
    ("GET", "/api/v1/reports/budgets"): P.REPORTS_PUBLISHERS,
    ("PUT", "/api/v1/reports/budgets"): P.REPORTS_POLICY_MANAGE,
    ("GET", "/api/v1/reports/catalogue"): P.REPORTS_PUBLISHERS,
    ("POST", "/api/v1/reports/catalogue"): P.REPORTS_CATALOGUE_MANAGE,
    ("GET", "/api/v1/reports/policy"): P.REPORTS_PUBLISHERS,
    ("PUT", "/api/v1/reports/policy"): P.REPORTS_POLICY_MANAGE,
    ("GET", "/api/v1/reports/publishers"): P.REPORTS_PUBLISHERS,
    ("POST", "/api/v1/reports/publishers"): P.REPORTS_PUBLISHERS,
    ("GET", "/api/v1/reports/publishers/{report_id}"): P.REPORTS_PUBLISHERS,
    ("GET", "/api/v1/roles"): P.ROLES_READ,
    ("POST", "/api/v1/roles"): P.ROLES_MANAGE,
    ("PUT", "/api/v1/roles/{name}/permissions"): P.ROLES_MANAGE,
    ("GET", "/api/v1/searches"): P.SEARCHES_READ,
    ("POST", "/api/v1/searches"): P.SEARCHES_WRITE,
    ("DELETE", "/api/v1/searches/{record_id}"): P.SEARCHES_WRITE,
    ("GET", "/api/v1/searches/{record_id}"): P.SEARCHES_READ,
    ("PATCH", "/api/v1/searches/{record_id}"): P.SEARCHES_WRITE,
    ("GET", "/api/v1/security-contacts"): P.SECURITY_CONTACTS_MANAGE,
    ("POST", "/api/v1/security-contacts"): P.SECURITY_CONTACTS_MANAGE,
    ("DELETE", "/api/v1/security-contacts/{contact_id}"): P.SECURITY_CONTACTS_MANAGE,
    ("GET", "/api/v1/security-contacts/mutes"): P.SECURITY_CONTACTS_MANAGE,
    ("GET", "/api/v1/security-contacts/{contact_id}/mutes"): P.SECURITY_CONTACTS_MANAGE,
    ("PUT", "/api/v1/security-contacts/{contact_id}/mutes"): P.SECURITY_CONTACTS_MANAGE,
    ("POST", "/api/v1/self-registration"): None,
    ("POST", "/api/v1/self-registration/confirm"): None,
    ("GET", "/api/v1/self-registration/settings"): P.POLICY_MANAGE,
    ("PUT", "/api/v1/self-registration/settings"): P.POLICY_MANAGE,
    ("DELETE", "/api/v1/sso/saml"): P.SSO_MANAGE,
    ("GET", "/api/v1/sso/saml"): P.SSO_MANAGE,
    ("PUT", "/api/v1/sso/saml"): P.SSO_MANAGE,
    ("POST", "/api/v1/sso/saml/{tenant_slug}/acs"): None,
    ("GET", "/api/v1/sso/saml/{tenant_slug}/login"): None,
    ("GET", "/api/v1/sso/saml/{tenant_slug}/metadata"): None,
    ("GET", "/api/v1/unsubscribe/{token}"): None,
    ("POST", "/api/v1/unsubscribe/{token}"): None,
    ("GET", "/healthz"): None,
    ("GET", "/metrics"): None,
    # The caller's own tokens: any signed-in account or operator, for itself only.
    ("GET", "/api/v1/auth/me/tokens"): None,
    ("POST", "/api/v1/auth/me/tokens"): None,
    ("POST", "/api/v1/auth/me/tokens/{token_id}/revoke"): None,
    ("GET", "/api/v1/operator/auth/me/tokens"): None,
    ("POST", "/api/v1/operator/auth/me/tokens"): None,
    ("POST", "/api/v1/operator/auth/me/tokens/{token_id}/revoke"): None,
    ("GET", "/api/v1/tokens"): P.TOKENS_MANAGE,
    ("POST", "/api/v1/tokens/{token_id}/revoke"): P.TOKENS_MANAGE,
    # --- pages (web/): open ones answer None, like the API's sign-in routes -------------------------
    ("GET", "/"): None,
    ("GET", "/signin"): None,
    ("POST", "/signin"): None,
    ("GET", "/signin/second-factor"): None,
    ("POST", "/signin/second-factor"): None,
    ("GET", "/signin/done"): None,
    ("POST", "/signout"): None,
    # --- the consoles' pages (web/consoles and each area's pages.py): the permission of the API's route ---
    ("GET", "/console"): None,
    ("GET", "/console/accounts"): P.ACCOUNTS_READ,
    ("POST", "/console/accounts"): P.ACCOUNTS_MANAGE,
    ("GET", "/console/accounts/{account_id}"): P.ACCOUNTS_READ,
    ("POST", "/console/accounts/{account_id}/disable"): P.ACCOUNTS_MANAGE,
    ("POST", "/console/accounts/{account_id}/enable"): P.ACCOUNTS_MANAGE,
    ("POST", "/console/accounts/{account_id}/password-reset"): P.ACCOUNTS_MANAGE,
    ("POST", "/console/accounts/{account_id}/roles"): P.ROLES_ASSIGN,
    ("POST", "/console/accounts/{account_id}/roles/{role}/revoke"): P.ROLES_ASSIGN,
    ("GET", "/console/approvals"): P.ACCOUNTS_READ,
    ("POST", "/console/approvals/{approval_id}/approve"): P.ACCOUNTS_READ,
    ("POST", "/console/approvals/{approval_id}/reject"): P.ACCOUNTS_READ,
    ("GET", "/console/audit"): P.AUDIT_READ,
    ("GET", "/console/audit/chain"): P.AUDIT_VERIFY,
    ("POST", "/console/audit/chain"): P.AUDIT_VERIFY,
    ("GET", "/console/audit/export"): P.AUDIT_READ,
    ("GET", "/console/audit/sign-in-failures"): P.AUDIT_READ,
    ("GET", "/console/console.css"): None,
    ("GET", "/console/operator-grants"): P.OPERATOR_GRANTS_APPROVE,
    ("POST", "/console/operator-grants/{grant_id}/approve"): P.OPERATOR_GRANTS_APPROVE,
    ("POST", "/console/operator-grants/{grant_id}/deny"): P.OPERATOR_GRANTS_APPROVE,
    ("POST", "/console/operator-grants/{grant_id}/revoke"): P.OPERATOR_GRANTS_APPROVE,
    ("GET", "/console/password-policy"): P.POLICY_MANAGE,
    ("POST", "/console/password-policy/{role_class}"): P.POLICY_MANAGE,
    ("GET", "/console/privacy/complaints"): P.PRIVACY_COMPLAINTS_HANDLE,
    ("GET", "/console/privacy/complaints/{complaint_id}"): P.PRIVACY_COMPLAINTS_HANDLE,
    ("POST", "/console/privacy/complaints/{complaint_id}/answer"): P.PRIVACY_COMPLAINTS_HANDLE,
    ("GET", "/console/privacy/disclosures"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("GET", "/console/privacy/disclosures/{disclosure_id}"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("GET", "/console/privacy/publisher-reports"): P.REPORTS_PUBLISHERS,
    ("GET", "/console/privacy/requests"): P.PRIVACY_REQUESTS_HANDLE,
    ("GET", "/console/privacy/requests/{request_id}"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/console/privacy/requests/{request_id}/approve"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/console/privacy/requests/{request_id}/complete"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/console/privacy/requests/{request_id}/deny"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/console/privacy/requests/{request_id}/hold"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/console/privacy/requests/{request_id}/resume"): P.PRIVACY_REQUESTS_HANDLE,
    ("POST", "/console/privacy/requests/{request_id}/start"): P.PRIVACY_REQUESTS_HANDLE,
    ("GET", "/console/privacy/retention"): P.PRIVACY_RETENTION_MANAGE,
    ("POST", "/console/privacy/retention/{category}"): P.PRIVACY_RETENTION_MANAGE,
    ("GET", "/console/security-contacts"): P.SECURITY_CONTACTS_MANAGE,
    ("POST", "/console/security-contacts"): P.SECURITY_CONTACTS_MANAGE,
    ("POST", "/console/security-contacts/{contact_id}/mutes"): P.SECURITY_CONTACTS_MANAGE,
    ("POST", "/console/security-contacts/{contact_id}/remove"): P.SECURITY_CONTACTS_MANAGE,
    ("GET", "/console/usage"): P.AUDIT_READ,
    ("GET", "/operator"): None,
    ("GET", "/operator/escalations"): P.PLATFORM_PRIVACY_OVERSIGHT,
    ("POST", "/operator/escalations/{tenant_id}/{escalation_id}/acknowledge"): P.PLATFORM_PRIVACY_OVERSIGHT,
    ("GET", "/operator/grants"): P.PLATFORM_GRANTS_REQUEST,
    ("POST", "/operator/grants"): P.PLATFORM_GRANTS_REQUEST,
    ("GET", "/operator/grants/{grant_id}/patrons"): P.PLATFORM_GRANTS_REQUEST,
    ("GET", "/operator/institutions"): P.PLATFORM_TENANTS_MANAGE,
    ("POST", "/operator/institutions"): P.PLATFORM_TENANTS_MANAGE,
    ("POST", "/operator/institutions/{tenant_id}/resume"): P.PLATFORM_TENANTS_MANAGE,
    ("POST", "/operator/institutions/{tenant_id}/suspend"): P.PLATFORM_TENANTS_MANAGE,
    ("GET", "/operator/usage"): P.PLATFORM_USAGE_READ,
    ("GET", "/signin/forgot"): None,
    ("POST", "/signin/forgot"): None,
    ("GET", "/signin/sso"): None,
    ("GET", "/reset-password"): None,
    ("POST", "/reset-password"): None,
    ("GET", "/accept-invitation"): None,
    ("POST", "/accept-invitation"): None,
    ("GET", "/operator/signin"): None,
    ("POST", "/operator/signin"): None,
    ("GET", "/operator/signin/second-factor"): None,
    ("POST", "/operator/signin/second-factor"): None,
    ("POST", "/operator/signout"): None,
    ("GET", "/operator/enrol"): None,
    ("POST", "/operator/enrol"): None,
    ("GET", "/enrol-second-factor"): None,
    ("POST", "/enrol-second-factor"): None,
    # the patron portal: the patron's own permission, as the API's /me routes
    ("GET", "/portal"): P.SELF_SERVICE,
    ("GET", "/portal/posts"): P.SELF_SERVICE,
    ("POST", "/portal/posts/{post_id}/delete"): P.SELF_SERVICE,
    ("GET", "/portal/requests"): P.SELF_SERVICE,
    ("POST", "/portal/requests"): P.SELF_SERVICE,
    ("GET", "/portal/correct"): P.SELF_SERVICE,
    ("POST", "/portal/correct"): P.SELF_SERVICE,
    ("GET", "/portal/complaints"): P.SELF_SERVICE,
    ("POST", "/portal/complaints"): P.SELF_SERVICE,
    ("GET", "/portal/preferences"): P.SELF_SERVICE,
    ("POST", "/portal/preferences"): P.SELF_SERVICE,
    ("GET", "/portal/consents"): P.SELF_SERVICE,
    ("GET", "/portal/cookies"): P.SELF_SERVICE,
    ("POST", "/portal/cookie-choice"): P.SELF_SERVICE,
    # open: the notice is public; registration and its confirmation come before any account
    ("GET", "/privacy-notice/{tenant_slug}"): None,
    ("GET", "/register"): None,
    ("POST", "/register"): None,
    ("GET", "/confirm-email"): None,
    ("POST", "/confirm-email"): None,
    # Active response (monitor/response/routes.py): an operator control.
    ("GET", "/api/v1/operator/blocks"): P.PLATFORM_BLOCKS_READ,
    ("POST", "/api/v1/operator/blocks"): P.PLATFORM_BLOCKS_MANAGE,
    ("DELETE", "/api/v1/operator/blocks/{block_id}"): P.PLATFORM_BLOCKS_MANAGE,
    # Incidents (incidents/routes.py): the handlers', then the institution's.
    ("GET", "/api/v1/operator/incidents"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/from-alert"): P.PLATFORM_INCIDENTS_HANDLE,
    ("GET", "/api/v1/operator/incidents/{incident_id}"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/{incident_id}/assign"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/{incident_id}/triage"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/{incident_id}/steps"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/{incident_id}/close"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/{incident_id}/breach"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/{incident_id}/breach/notices"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/api/v1/operator/incidents/{incident_id}/breach/declines"): P.PLATFORM_INCIDENTS_HANDLE,
    ("GET", "/api/v1/incidents"): P.INCIDENTS_READ,
    ("GET", "/api/v1/incidents/{incident_id}"): P.INCIDENTS_READ,
    ("GET", "/api/v1/incidents/{incident_id}/patron-notices"): P.INCIDENTS_NOTIFY,
    ("POST", "/api/v1/incidents/{incident_id}/patron-notices/send"): P.INCIDENTS_NOTIFY,
    ("POST", "/api/v1/incidents/{incident_id}/patron-notices/declines"): P.INCIDENTS_NOTIFY,
    ("POST", "/api/v1/incidents/{incident_id}/acknowledgement"): P.INCIDENTS_NOTIFY,
    # The consoles' pages of alerts, blocks, file integrity, incidents, backups, reports and evidence (each
    # area's pages.py): the permission of the API route calling the same service.
    ("GET", "/operator/alerts"): P.PLATFORM_ALERTS_READ,
    ("GET", "/operator/alerts/{alert_id}"): P.PLATFORM_ALERTS_READ,
    ("POST", "/operator/alerts/{alert_id}/acknowledge"): P.PLATFORM_ALERTS_MANAGE,
    ("POST", "/operator/alerts/{alert_id}/close"): P.PLATFORM_ALERTS_MANAGE,
    ("GET", "/console/alerts"): P.ALERTS_READ,
    ("GET", "/console/alerts/{alert_id}"): P.ALERTS_READ,
    ("GET", "/operator/blocks"): P.PLATFORM_BLOCKS_READ,
    ("POST", "/operator/blocks"): P.PLATFORM_BLOCKS_MANAGE,
    ("POST", "/operator/blocks/{block_id}/unblock"): P.PLATFORM_BLOCKS_MANAGE,
    ("GET", "/operator/file-integrity"): P.PLATFORM_FIM_READ,
    ("POST", "/operator/file-integrity/{baseline_id}/approve"): P.PLATFORM_FIM_MANAGE,
    ("POST", "/operator/file-integrity/{baseline_id}/reject"): P.PLATFORM_FIM_MANAGE,
    ("GET", "/operator/incidents"): P.PLATFORM_INCIDENTS_HANDLE,
    ("GET", "/operator/incidents/{incident_id}"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/incidents/{incident_id}/triage"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/incidents/{incident_id}/steps"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/incidents/{incident_id}/close"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/incidents/{incident_id}/breach"): P.PLATFORM_INCIDENTS_HANDLE,
    ("GET", "/console/incidents"): P.INCIDENTS_READ,
    ("GET", "/console/incidents/{incident_id}"): P.INCIDENTS_READ,
    ("POST", "/console/incidents/{incident_id}/acknowledgement"): P.INCIDENTS_NOTIFY,
    ("GET", "/operator/backups"): P.PLATFORM_BACKUPS_READ,
    ("GET", "/operator/drills"): P.PLATFORM_BACKUPS_READ,
    ("GET", "/console/security-report"): P.REPORTS_SECURITY_READ,
    ("GET", "/console/evidence"): P.REPORTS_SECURITY_READ,
    ("GET", "/operator/security-report"): P.PLATFORM_REPORTS_READ,
    ("GET", "/operator/evidence"): P.PLATFORM_REPORTS_READ,
    # The institution console's pages for what was API-only: disclosures, publisher reports, legal holds,
    # the patrons' breach notices.
    ("POST", "/console/privacy/disclosures"): P.PRIVACY_DISCLOSURES_MANAGE,
    ("POST", "/console/privacy/publisher-reports"): P.REPORTS_PUBLISHERS,
    ("GET", "/console/privacy/publisher-reports/{report_id}"): P.REPORTS_PUBLISHERS,
    ("GET", "/console/privacy/publisher-reports/{report_id}/csv"): P.REPORTS_PUBLISHERS,
    ("GET", "/console/privacy/legal-holds"): P.PRIVACY_HOLDS_MANAGE,
    ("POST", "/console/privacy/legal-holds"): P.PRIVACY_HOLDS_MANAGE,
    ("POST", "/console/privacy/legal-holds/{hold_id}/lift"): P.PRIVACY_HOLDS_MANAGE,
    ("GET", "/console/incidents/{incident_id}/patron-notices"): P.INCIDENTS_NOTIFY,
    ("POST", "/console/incidents/{incident_id}/patron-notices/send"): P.INCIDENTS_NOTIFY,
    ("POST", "/console/incidents/{incident_id}/patron-notices/declines"): P.INCIDENTS_NOTIFY,
    # The operator console's and the portal's pages for actions that were API-only (access, incidents,
    # monitor/alerts, privacy/subjects pages.py): the permission of the API route calling the same service.
    ("POST", "/operator/grants/{tenant_id}/{grant_id}/end"): P.PLATFORM_GRANTS_REQUEST,
    ("GET", "/operator/break-glass"): P.PLATFORM_GRANTS_BREAK_GLASS,
    ("POST", "/operator/break-glass"): P.PLATFORM_GRANTS_BREAK_GLASS,
    ("POST", "/operator/incidents"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/incidents/{incident_id}/assign"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/incidents/{incident_id}/breach/notices"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/incidents/{incident_id}/breach/declines"): P.PLATFORM_INCIDENTS_HANDLE,
    ("POST", "/operator/alerts/{alert_id}/promote"): P.PLATFORM_INCIDENTS_HANDLE,
    ("GET", "/portal/packages/{package_id}"): P.SELF_SERVICE,
}

WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Writes by method only, each for its reason.
NOT_WRITES = {
    # A read sent as POST so the looked-up value never lands in access logs.
    ("POST", "/api/v1/patrons/lookup"): "a lookup: the value travels in the body, not the URL",
    # The route lets whoever may see the queue reach a request; deciding it takes the permission of
    # the request's own kind, checked by the approvals service (tests/access, tests/identity).
    ("POST", "/api/v1/approvals/{record_id}/approve"): "the kind's permission is checked by the service",
    ("POST", "/api/v1/approvals/{record_id}/reject"): "the kind's permission is checked by the service",
    ("POST", "/console/approvals/{approval_id}/approve"): "the same service as the API's: the kind's permission",
    ("POST", "/console/approvals/{approval_id}/reject"): "the same service as the API's: the kind's permission",
}
READ_ONLY_TENANT = frozenset(p for p in TENANT_PERMISSIONS if p.value.endswith(".read"))
READ_ONLY_PLATFORM = frozenset(p for p in PLATFORM_PERMISSIONS if p.value.endswith(".read"))


def _declared(dependant) -> set[P]:
    found = set()
    for dependency in dependant.dependencies:
        permission = getattr(dependency.call, "required_permission", None)
        if permission is not None:
            found.add(permission)
        found |= _declared(dependency)
    return found


def _operations(app) -> dict[tuple[str, str], P | None]:
    declared = {}
    for route in _routes(app.routes):
        if hasattr(route, "dependant"):
            for method in route.methods - {"HEAD"}:
                permissions = _declared(route.dependant)
                assert len(permissions) <= 1, (method, route.path, permissions)
                declared[(method, route.path)] = next(iter(permissions), None)
    return declared


def test_every_operation_demands_exactly_the_permission_in_the_table():
    declared = _operations(create_app(None, Settings(api_docs=True)))
    docs = {key for key in declared if key[1] in ("/docs", "/redoc", "/openapi.json")}
    assert {k: v for k, v in declared.items() if k not in docs} == EXPECTED


def test_no_write_is_guarded_by_a_read_permission():
    reading = [
        key
        for key, permission in EXPECTED.items()
        if key[0] in WRITES and permission in READ_ONLY_TENANT and key not in NOT_WRITES
    ]
    assert reading == []


def test_every_write_refuses_a_read_only_credential(db, tenant, issue_token, home):
    app = create_app(db, Settings(home=home))
    tenant_reader = issue_token(tenant, permissions=READ_ONLY_TENANT)
    with platform_session(db) as session:
        issued = tokens.issue_operator_token(session, "reader", sorted(READ_ONLY_PLATFORM), timedelta(hours=1))
    operator_reader = issued[1]
    paths = {path: operation for path, item in app.openapi()["paths"].items() for operation in item.values()}
    accepted = []
    for (method, path), permission in sorted(EXPECTED.items()):
        if method not in WRITES or permission is None or (method, path) in NOT_WRITES:
            continue
        if not path.startswith("/api/"):
            continue  # a page takes no token (only a browser's session): tests/web sign in without the permission
        token = operator_reader if permission in PLATFORM_PERMISSIONS else tenant_reader
        client = TestClient(app, client=(fresh_address(), 50000), raise_server_exceptions=False)
        savepoint = db.bind.begin_nested()
        try:
            response = client.request(
                method, _url(path, paths.get(path, {})), json={}, headers={"Authorization": f"Bearer {token}"}
            )
        finally:
            savepoint.rollback()
        if response.status_code != 403:
            accepted.append(f"{method} {path} ({permission}): {response.status_code} {response.text[:120]}")
    assert accepted == [], "\n".join(accepted)
