"""Token lifecycle and maker-checker between people: a token's owner and last use; the person behind
each side of an approval request and of an operator grant; operator tokens out of tenant transactions.

Numbered 0025, revising 0022: other branches may add 0023 and 0024. Whoever merges after them
points `down_revision` at the last of those (nothing here depends on them).

Revision ID: 0025
Revises: 0024
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A tenant token acts for an account of its own tenant (the key includes tenant_id, as every tenant
    # key does) and goes with it; NULL is a service token, minted only at the platform console. Existing
    # tokens were all minted there, so they stay service tokens. last_used_at is written at most once a
    # minute per token (identity/tokens/service.py), never on every request.
    op.execute(
        """
        ALTER TABLE api_tokens
            ADD COLUMN owner_id UUID,
            ADD COLUMN last_used_at TIMESTAMP WITH TIME ZONE,
            ADD CONSTRAINT fk_api_tokens_owner FOREIGN KEY (tenant_id, owner_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE;
        CREATE INDEX ix_api_tokens_owner ON api_tokens (tenant_id, owner_id);

        ALTER TABLE operator_tokens
            ADD COLUMN owner_id UUID,
            ADD COLUMN last_used_at TIMESTAMP WITH TIME ZONE,
            ADD CONSTRAINT fk_operator_tokens_owner_id FOREIGN KEY (owner_id)
                REFERENCES operator_accounts (id) ON DELETE CASCADE;
        CREATE INDEX ix_operator_tokens_owner ON operator_tokens (owner_id);
        """
    )
    # Operator tokens now name operator accounts: like those accounts and their sessions (migration
    # 0012), the rows are seen only by a transaction without tenant context.
    op.execute("ALTER TABLE operator_tokens ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE operator_tokens FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY platform_only ON operator_tokens "
        "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
    )

    # The token lookup before any tenant context now also says whose the token is, when it was made (its
    # power class caps its age) and when it was last used (to skip the write within the minute).
    op.execute("DROP FUNCTION bookwarden_resolve_api_token(bytea)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_resolve_api_token(candidate bytea)
        RETURNS TABLE (
            tenant_id uuid, token_id uuid, scopes varchar[], owner_id uuid,
            created_at timestamptz, last_used_at timestamptz
        )
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT t.tenant_id, t.id, t.scopes, t.owner_id, t.created_at, t.last_used_at FROM api_tokens t
            WHERE t.token_hash = candidate AND t.revoked_at IS NULL AND t.expires_at > now()
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_resolve_api_token(bytea) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_resolve_api_token(bytea) TO bookwarden_app")

    # Maker-checker compares people: beside the credential that asked and the one that decided, the person
    # behind each (a session's account, a token's owner; NULL for a service token and for rows older than
    # this), and the database refuses a decision by the asker's person as it refuses one by the same
    # credential (ck_approval_requests_checker_is_not_maker).
    op.execute(
        """
        ALTER TABLE approval_requests
            ADD COLUMN requested_by_person UUID,
            ADD COLUMN decided_by_person UUID,
            ADD CONSTRAINT ck_approval_requests_checker_is_not_maker_person CHECK (
                decided_by_person IS NULL OR requested_by_person IS NULL
                OR decided_by_person <> requested_by_person
            );
        ALTER TABLE operator_grants
            ADD COLUMN requested_by_person UUID,
            ADD COLUMN decided_by_person UUID,
            ADD CONSTRAINT ck_operator_grants_decider_is_not_asker_person CHECK (
                decided_by_person IS NULL OR requested_by_person IS NULL
                OR decided_by_person <> requested_by_person
            );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE operator_grants
            DROP CONSTRAINT ck_operator_grants_decider_is_not_asker_person,
            DROP COLUMN decided_by_person,
            DROP COLUMN requested_by_person;
        ALTER TABLE approval_requests
            DROP CONSTRAINT ck_approval_requests_checker_is_not_maker_person,
            DROP COLUMN decided_by_person,
            DROP COLUMN requested_by_person;
        """
    )
    op.execute("DROP FUNCTION bookwarden_resolve_api_token(bytea)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_resolve_api_token(candidate bytea)
        RETURNS TABLE (tenant_id uuid, token_id uuid, scopes varchar[])
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT t.tenant_id, t.id, t.scopes FROM api_tokens t
            WHERE t.token_hash = candidate AND t.revoked_at IS NULL AND t.expires_at > now()
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_resolve_api_token(bytea) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_resolve_api_token(bytea) TO bookwarden_app")
    op.execute("DROP POLICY platform_only ON operator_tokens")
    op.execute("ALTER TABLE operator_tokens NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE operator_tokens DISABLE ROW LEVEL SECURITY")
    op.execute(
        """
        DROP INDEX ix_operator_tokens_owner;
        ALTER TABLE operator_tokens DROP COLUMN last_used_at, DROP COLUMN owner_id;
        DROP INDEX ix_api_tokens_owner;
        ALTER TABLE api_tokens DROP COLUMN last_used_at, DROP COLUMN owner_id;
        """
    )
