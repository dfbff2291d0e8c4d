"""Second factors: registered WebAuthn credentials, WebAuthn ceremony challenges, pending TOTP enrolments.

All three are tenant tables under row-level security, keyed and linked through tenant_id, and
go with their account (ON DELETE CASCADE). Nothing here is secret except the pending TOTP
secret, which is sealed under the account's subject key like the active one.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ["webauthn_credentials", "mfa_challenges", "totp_enrolments"]


def upgrade() -> None:
    # credential_id: WebAuthn Level 3 §5.1 caps credential ids at 1023 bytes. sign_count is the
    # authenticator's unsigned 32-bit counter, hence BIGINT. aaguid names the authenticator model
    # (all zeros when it does not say). name is the holder's own label for the key.
    op.execute(
        """
        CREATE TABLE webauthn_credentials (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            account_id UUID NOT NULL,
            credential_id BYTEA NOT NULL,
            public_key BYTEA NOT NULL,
            sign_count BIGINT NOT NULL,
            transports TEXT[] DEFAULT '{}' NOT NULL,
            aaguid UUID NOT NULL,
            backed_up BOOLEAN DEFAULT false NOT NULL,
            name VARCHAR(100) NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            last_used_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_webauthn_credentials PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_webauthn_credentials_tenant_id_credential_id UNIQUE (tenant_id, credential_id),
            CONSTRAINT fk_webauthn_credentials_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_webauthn_credentials_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_webauthn_credentials_credential_id_length
                CHECK (octet_length(credential_id) BETWEEN 1 AND 1023),
            CONSTRAINT ck_webauthn_credentials_sign_count_in_range CHECK (sign_count BETWEEN 0 AND 4294967295)
        );
        CREATE INDEX ix_webauthn_credentials_account ON webauthn_credentials (tenant_id, account_id);
        """
    )
    # One live ceremony per session and purpose: asking for new options replaces the challenge
    # (ON CONFLICT on the unique key), and a response takes it with DELETE ... RETURNING, so a
    # challenge is answered at most once. A challenge is bound to the session that asked for it:
    # another browser of the same account cannot answer it.
    op.execute(
        """
        CREATE TABLE mfa_challenges (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            account_id UUID NOT NULL,
            session_id UUID NOT NULL,
            purpose VARCHAR(16) NOT NULL,
            challenge BYTEA NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            CONSTRAINT pk_mfa_challenges PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_mfa_challenges_tenant_id_session_id_purpose UNIQUE (tenant_id, session_id, purpose),
            CONSTRAINT fk_mfa_challenges_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_mfa_challenges_session FOREIGN KEY(tenant_id, session_id)
                REFERENCES sessions (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_mfa_challenges_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_mfa_challenges_purpose_known CHECK (purpose IN ('register', 'authenticate'))
        );
        CREATE INDEX ix_mfa_challenges_account ON mfa_challenges (tenant_id, account_id);
        """
    )
    # A TOTP secret shown to the holder but not yet confirmed with a code from their app. Kept
    # apart from accounts.totp_secret so that an abandoned enrolment never becomes a factor that
    # sign-in would ask for, and so that the active secret keeps working until the new one is
    # confirmed (changing phones). One per account; starting again replaces it.
    op.execute(
        """
        CREATE TABLE totp_enrolments (
            tenant_id UUID NOT NULL,
            account_id UUID NOT NULL,
            secret BYTEA NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            CONSTRAINT pk_totp_enrolments PRIMARY KEY (tenant_id, account_id),
            CONSTRAINT fk_totp_enrolments_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_totp_enrolments_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        """
    )
    for table in TABLES:
        tenant_table(table)
