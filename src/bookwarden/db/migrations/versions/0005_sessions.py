"""Sign-in sessions (tenant table, RLS) and the brute-force counters (platform table).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app, tenant_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only the SHA-256 of the cookie value is stored: the value carries 256 random bits, so a
    # fast hash is enough, and whoever reads this table cannot sign in with what they read.
    # source_address is kept as given: it is security data (who signed in from where).
    op.execute(
        """
        CREATE TABLE sessions (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            token_hash BYTEA NOT NULL,
            account_id UUID NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            last_seen_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            idle_expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            absolute_expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            revoked_at TIMESTAMP WITH TIME ZONE,
            mfa_required BOOLEAN NOT NULL,
            mfa_verified_at TIMESTAMP WITH TIME ZONE,
            mfa_failures INTEGER DEFAULT 0 NOT NULL,
            source_address TEXT NOT NULL,
            user_agent TEXT NOT NULL,
            CONSTRAINT pk_sessions PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_sessions_tenant_id_token_hash UNIQUE (tenant_id, token_hash),
            CONSTRAINT fk_sessions_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_sessions_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_sessions_mfa_failures_not_negative CHECK (mfa_failures >= 0),
            CONSTRAINT ck_sessions_idle_within_absolute CHECK (idle_expires_at <= absolute_expires_at)
        );
        -- Cookies are found by hash before the tenant is known (bookwarden_resolve_session).
        CREATE INDEX ix_sessions_token_hash ON sessions (token_hash);
        CREATE INDEX ix_sessions_account ON sessions (tenant_id, account_id);
        """
    )
    tenant_table("sessions")

    # Cookie -> tenant happens before any tenant context exists, exactly as for API tokens
    # (0001): a read-only policy lets the owner see session rows, and this one narrow function,
    # running as the owner, maps a cookie hash to its tenant, session and account, and nothing else.
    op.execute("CREATE POLICY session_lookup ON sessions FOR SELECT TO bookwarden_owner USING (true)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_resolve_session(candidate bytea)
        RETURNS TABLE (tenant_id uuid, session_id uuid, account_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT s.tenant_id, s.id, s.account_id FROM sessions s
            WHERE s.token_hash = candidate AND s.revoked_at IS NULL
              AND s.idle_expires_at > now() AND s.absolute_expires_at > now()
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_resolve_session(bytea) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_resolve_session(bytea) TO bookwarden_app")

    # A platform table: the per-address counters belong to no tenant, and every instance must see
    # the same counts. No tenant_id column and no raw identifiers: `key` is an HMAC of the account
    # (under the tenant's index key) or of the source address (under a key derived from the
    # master key), so the table names nobody. scope is text with a CHECK, like outbox.category.
    op.execute(
        """
        CREATE TABLE auth_failures (
            scope TEXT NOT NULL,
            key BYTEA NOT NULL,
            consecutive INTEGER NOT NULL,
            window_start TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            last_failure_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            locked_until TIMESTAMP WITH TIME ZONE,
            notice_sent_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_auth_failures PRIMARY KEY (scope, key),
            CONSTRAINT ck_auth_failures_scope_known CHECK (scope IN ('account', 'address')),
            CONSTRAINT ck_auth_failures_consecutive_not_negative CHECK (consecutive >= 0)
        );
        CREATE INDEX ix_auth_failures_last_failure_at ON auth_failures (last_failure_at);
        """
    )
    grant_app("auth_failures", "SELECT, INSERT, UPDATE, DELETE")
