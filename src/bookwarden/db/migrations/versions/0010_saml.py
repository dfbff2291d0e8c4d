"""Institutional sign-on (SAML 2.0): the tenant's identity provider, sign-ins in flight, used assertions.

All three are tenant tables under forced row-level security, keyed by tenant_id. Nothing here is
secret: IdP metadata is public, a request in flight holds only the SHA-256 of its browser's
cookie, and a used assertion only its id.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ["saml_configs", "saml_requests", "saml_consumed_assertions"]


def upgrade() -> None:
    # One identity provider per tenant. role_mappings is a JSON array of
    # {"attribute", "value", "role"}; the service refuses administrative roles in it.
    op.execute(
        """
        CREATE TABLE saml_configs (
            tenant_id UUID NOT NULL,
            idp_entity_id VARCHAR(1024) NOT NULL,
            idp_metadata TEXT NOT NULL,
            username_attribute VARCHAR(256) NOT NULL,
            email_attribute VARCHAR(256),
            display_name_attribute VARCHAR(256),
            role_mappings JSONB DEFAULT '[]' NOT NULL,
            create_accounts BOOLEAN NOT NULL,
            new_account_kind VARCHAR(16) NOT NULL,
            updated_by UUID NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_saml_configs PRIMARY KEY (tenant_id),
            CONSTRAINT fk_saml_configs_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_saml_configs_role_mappings_array CHECK (jsonb_typeof(role_mappings) = 'array'),
            CONSTRAINT ck_saml_configs_known_account_kind CHECK (new_account_kind IN ('staff', 'patron'))
        );
        """
    )
    # A request in flight lives 10 minutes and is answered once (deleted on its answer); it goes
    # with its tenant's configuration. The RelayState (random, 256 bits) finds it; only the
    # browser holding the cookie whose hash is browser_hash may answer it.
    op.execute(
        """
        CREATE TABLE saml_requests (
            tenant_id UUID NOT NULL,
            relay_state VARCHAR(64) NOT NULL,
            request_id VARCHAR(256) NOT NULL,
            browser_hash BYTEA NOT NULL,
            next_path TEXT NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            CONSTRAINT pk_saml_requests PRIMARY KEY (tenant_id, relay_state),
            CONSTRAINT fk_saml_requests_config FOREIGN KEY(tenant_id)
                REFERENCES saml_configs (tenant_id) ON DELETE CASCADE,
            CONSTRAINT fk_saml_requests_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_saml_requests_browser_hash_length CHECK (octet_length(browser_hash) = 32)
        );
        CREATE INDEX ix_saml_requests_expiry ON saml_requests (tenant_id, expires_at);
        """
    )
    # The replay guard: an assertion id is inserted once (the primary key refuses a second), and
    # kept until the assertion could no longer be accepted anyway (its NotOnOrAfter plus skew).
    op.execute(
        """
        CREATE TABLE saml_consumed_assertions (
            tenant_id UUID NOT NULL,
            assertion_id VARCHAR(256) NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            CONSTRAINT pk_saml_consumed_assertions PRIMARY KEY (tenant_id, assertion_id),
            CONSTRAINT fk_saml_consumed_assertions_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_saml_consumed_assertions_expiry ON saml_consumed_assertions (tenant_id, expires_at);
        """
    )
    for table in TABLES:
        tenant_table(table)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
