"""Core: tenants, API tokens, the hosted library domain, all tenant tables under RLS.

Revision ID: 0001
Revises:
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app, tenant_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ["api_tokens", "patrons", "loans", "searches", "reading_lists", "reading_list_items", "posts"]


def upgrade() -> None:
    # NULLIF: once a connection has used SET LOCAL, the setting reads '' (not NULL) in later
    # transactions; '' must mean "no tenant" (zero rows), never a cast error or a match.
    op.execute(
        """
        CREATE FUNCTION bookwarden_current_tenant() RETURNS uuid
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT NULLIF(current_setting('bookwarden.tenant_id', true), '')::uuid $$
        """
    )
    op.execute("CREATE TYPE tenant_status AS ENUM ('active', 'suspended')")
    op.execute("CREATE TYPE patron_status AS ENUM ('active', 'blocked', 'expired')")
    op.execute(
        """
        CREATE TABLE tenants (
            id UUID NOT NULL,
            slug VARCHAR(63) NOT NULL,
            name VARCHAR(200) NOT NULL,
            status tenant_status NOT NULL,
            suspended_reason VARCHAR(500),
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            suspended_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_tenants PRIMARY KEY (id),
            CONSTRAINT uq_tenants_slug UNIQUE (slug)
        );
        CREATE TABLE operator_tokens (
            id UUID NOT NULL,
            name VARCHAR(100) NOT NULL,
            token_hash BYTEA NOT NULL,
            scopes VARCHAR(40)[] NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            revoked_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_operator_tokens PRIMARY KEY (id),
            CONSTRAINT uq_operator_tokens_token_hash UNIQUE (token_hash)
        );
        CREATE TABLE api_tokens (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            name VARCHAR(100) NOT NULL,
            token_hash BYTEA NOT NULL,
            scopes VARCHAR(40)[] NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            revoked_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_api_tokens PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_api_tokens_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT uq_api_tokens_tenant_id_token_hash UNIQUE (tenant_id, token_hash)
        );
        -- Tokens are found by hash before the tenant is known (bookwarden_resolve_api_token).
        CREATE INDEX ix_api_tokens_token_hash ON api_tokens (token_hash);
        CREATE TABLE patrons (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            name BYTEA NOT NULL,
            email BYTEA,
            phone BYTEA,
            postal_address BYTEA,
            institutional_id BYTEA,
            affiliation BYTEA,
            birth_date BYTEA,
            barcode BYTEA,
            email_index BYTEA,
            institutional_id_index BYTEA,
            barcode_index BYTEA,
            status patron_status NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_patrons PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_patrons_tenant_id_institutional_id_index UNIQUE (tenant_id, institutional_id_index),
            CONSTRAINT uq_patrons_tenant_id_barcode_index UNIQUE (tenant_id, barcode_index),
            CONSTRAINT fk_patrons_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_patrons_email_index ON patrons (tenant_id, email_index);
        CREATE TABLE loans (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            patron_id UUID NOT NULL,
            item_id VARCHAR(64) NOT NULL,
            item_title BYTEA,
            borrowed_at TIMESTAMP WITH TIME ZONE NOT NULL,
            due_at TIMESTAMP WITH TIME ZONE NOT NULL,
            returned_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_loans PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_loans_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_loans_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_loans_patron ON loans (tenant_id, patron_id);
        CREATE TABLE posts (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            patron_id UUID NOT NULL,
            board VARCHAR(64) NOT NULL,
            body BYTEA NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_posts PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_posts_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_posts_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_posts_patron ON posts (tenant_id, patron_id);
        CREATE TABLE reading_lists (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            patron_id UUID NOT NULL,
            title BYTEA NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_reading_lists PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_reading_lists_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_reading_lists_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_reading_lists_patron ON reading_lists (tenant_id, patron_id);
        CREATE TABLE searches (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            patron_id UUID NOT NULL,
            query BYTEA NOT NULL,
            searched_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_searches PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_searches_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_searches_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_searches_patron ON searches (tenant_id, patron_id);
        CREATE TABLE reading_list_items (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            list_id UUID NOT NULL,
            item_id VARCHAR(64) NOT NULL,
            note BYTEA,
            added_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_reading_list_items PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_reading_list_items_list FOREIGN KEY(tenant_id, list_id)
                REFERENCES reading_lists (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_reading_list_items_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_reading_list_items_list ON reading_list_items (tenant_id, list_id);
        """
    )
    for table in TENANT_TABLES:
        tenant_table(table)
    grant_app("tenants", "SELECT, INSERT, UPDATE")
    grant_app("operator_tokens", "SELECT, INSERT, UPDATE")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_current_tenant() TO bookwarden_app")

    # Token -> tenant happens before any tenant context exists. The app role cannot read
    # api_tokens without one, so this one narrow function (running as the owner, which a
    # read-only policy lets see token rows) maps a token hash to its tenant, id and scopes, and nothing else.
    op.execute("CREATE POLICY token_lookup ON api_tokens FOR SELECT TO bookwarden_owner USING (true)")
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
