"""Operator accounts and their sessions (platform tables), administrator-assisted MFA enrolment links
(tenant table, RLS), and the notice kinds each security contact has muted.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app, tenant_table

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PLATFORM_TABLES = ("operator_accounts", "operator_sessions")


def upgrade() -> None:
    # Platform staff who sign in with a password and a second factor. No tenant_id: an operator
    # belongs to no institution. The TOTP secrets are AES-256-GCM ciphertext under the operator's
    # own key in the keyring (the platform keeps its keys there under the nil id, which no tenant
    # can have); the password is an argon2id hash; recovery codes are salted SHA-256.
    # enrolment_nonce is the random value the one outstanding enrolment link is bound to: issuing
    # a new link replaces it, using the link clears it, so each link works once.
    op.execute(
        """
        CREATE TABLE operator_accounts (
            id UUID NOT NULL,
            username VARCHAR(64) NOT NULL,
            role VARCHAR(32) NOT NULL,
            status VARCHAR(16) NOT NULL,
            password_hash TEXT,
            password_changed_at TIMESTAMP WITH TIME ZONE,
            totp_secret BYTEA,
            totp_last_step BIGINT,
            recovery_code_hashes TEXT[],
            pending_totp_secret BYTEA,
            pending_totp_expires_at TIMESTAMP WITH TIME ZONE,
            enrolment_nonce BYTEA,
            enrolment_expires_at TIMESTAMP WITH TIME ZONE,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            disabled_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_operator_accounts PRIMARY KEY (id),
            CONSTRAINT uq_operator_accounts_username UNIQUE (username),
            CONSTRAINT ck_operator_accounts_role_known
                CHECK (role IN ('operator_support', 'operator_ops', 'ciso', 'dpo')),
            CONSTRAINT ck_operator_accounts_status_known CHECK (status IN ('enrolling', 'active', 'disabled')),
            CONSTRAINT ck_operator_accounts_active_has_both_factors
                CHECK (status <> 'active' OR (password_hash IS NOT NULL AND totp_secret IS NOT NULL))
        );
        CREATE TABLE operator_sessions (
            id UUID NOT NULL,
            token_hash BYTEA NOT NULL,
            account_id UUID NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            last_seen_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            idle_expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            absolute_expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            revoked_at TIMESTAMP WITH TIME ZONE,
            mfa_verified_at TIMESTAMP WITH TIME ZONE,
            mfa_failures INTEGER DEFAULT 0 NOT NULL,
            source_address TEXT NOT NULL,
            user_agent TEXT NOT NULL,
            CONSTRAINT pk_operator_sessions PRIMARY KEY (id),
            CONSTRAINT uq_operator_sessions_token_hash UNIQUE (token_hash),
            CONSTRAINT fk_operator_sessions_account_id FOREIGN KEY(account_id)
                REFERENCES operator_accounts (id) ON DELETE CASCADE,
            CONSTRAINT ck_operator_sessions_mfa_failures_not_negative CHECK (mfa_failures >= 0),
            CONSTRAINT ck_operator_sessions_idle_within_absolute CHECK (idle_expires_at <= absolute_expires_at)
        );
        CREATE INDEX ix_operator_sessions_account ON operator_sessions (account_id);
        """
    )
    # Out of every tenant's reach: row-level security that lets a transaction see these rows only
    # when it carries no tenant context. Platform code (platform_session) sees them; a transaction
    # opened for a tenant, whatever a bug in it might ask for, reads nothing and writes nothing here.
    for table in PLATFORM_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY platform_only ON {table} "
            "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
        )
    # No DELETE for the app role: operator accounts are disabled, never erased, so the audit trail
    # naming them always points at a row.
    grant_app("operator_accounts", "SELECT, INSERT, UPDATE")
    grant_app("operator_sessions", "SELECT, INSERT, UPDATE")

    # An administrator's enrolment link after an MFA reset: one outstanding link per account, bound
    # to a random nonce (the link's state fingerprint covers it), and, once its holder has proved
    # the password, to the sign-in session in which the new factor is enrolled (no foreign key:
    # sessions are never deleted apart from their account, whose deletion removes the link first).
    op.execute(
        """
        CREATE TABLE mfa_enrolment_links (
            tenant_id UUID NOT NULL,
            account_id UUID NOT NULL,
            nonce BYTEA NOT NULL,
            issued_by UUID NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            session_id UUID,
            CONSTRAINT pk_mfa_enrolment_links PRIMARY KEY (tenant_id, account_id),
            CONSTRAINT fk_mfa_enrolment_links_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_mfa_enrolment_links_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE
        );
        """
    )
    tenant_table("mfa_enrolment_links")

    # Which entitlement-change notice kinds a security contact has muted. Administrative kinds are
    # refused when muted and delivered whatever this column says (access/notices.py).
    op.execute("ALTER TABLE security_contacts ADD COLUMN muted_notices VARCHAR(48)[] DEFAULT '{}' NOT NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE security_contacts DROP COLUMN muted_notices")
    op.execute("DROP TABLE mfa_enrolment_links")
    op.execute("DROP TABLE operator_sessions")
    op.execute("DROP TABLE operator_accounts")
