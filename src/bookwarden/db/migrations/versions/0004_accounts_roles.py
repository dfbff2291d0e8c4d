"""Accounts, password history and policies, custom roles, role assignments, security contacts.

API tokens now carry permissions from the catalogue (core/permissions.py) instead of the
two coarse scopes; existing tokens keep exactly what those scopes allowed.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = [
    "accounts",
    "password_history",
    "password_policies",
    "roles",
    "role_permissions",
    "account_roles",
    "security_contacts",
]
READ = ["patrons.read", "loans.read", "searches.read", "reading_lists.read", "posts.read"]
WRITE = ["patrons.write", "loans.write", "searches.write", "reading_lists.write", "posts.write"]


def upgrade() -> None:
    op.execute("CREATE TYPE account_kind AS ENUM ('staff', 'patron')")
    op.execute("CREATE TYPE account_status AS ENUM ('invited', 'active', 'disabled')")
    op.execute(
        """
        CREATE TABLE password_policies (
            tenant_id UUID NOT NULL,
            role_class VARCHAR(16) NOT NULL,
            min_length INTEGER NOT NULL,
            max_length INTEGER NOT NULL,
            history INTEGER NOT NULL,
            expiry_days INTEGER,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_password_policies PRIMARY KEY (tenant_id, role_class),
            CONSTRAINT fk_password_policies_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE TABLE roles (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            name VARCHAR(64) NOT NULL,
            description VARCHAR(500) NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_roles PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_roles_tenant_id_name UNIQUE (tenant_id, name),
            CONSTRAINT fk_roles_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE TABLE security_contacts (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            email BYTEA NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_security_contacts PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_security_contacts_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE TABLE accounts (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            kind account_kind NOT NULL,
            username BYTEA NOT NULL,
            username_index BYTEA NOT NULL,
            email BYTEA,
            email_index BYTEA,
            display_name BYTEA,
            patron_id UUID,
            password_hash TEXT,
            password_changed_at TIMESTAMP WITH TIME ZONE,
            status account_status NOT NULL,
            totp_secret BYTEA,
            totp_last_step BIGINT,
            recovery_code_hashes TEXT[],
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            disabled_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_accounts PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_accounts_tenant_id_username_index UNIQUE (tenant_id, username_index),
            CONSTRAINT fk_accounts_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_accounts_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_accounts_email_index ON accounts (tenant_id, email_index);
        CREATE TABLE role_permissions (
            tenant_id UUID NOT NULL,
            role_id UUID NOT NULL,
            permission VARCHAR(64) NOT NULL,
            CONSTRAINT pk_role_permissions PRIMARY KEY (tenant_id, role_id, permission),
            CONSTRAINT fk_role_permissions_role FOREIGN KEY(tenant_id, role_id)
                REFERENCES roles (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_role_permissions_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE TABLE account_roles (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            account_id UUID NOT NULL,
            builtin_role VARCHAR(64),
            custom_role_id UUID,
            granted_by UUID,
            granted_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_account_roles PRIMARY KEY (tenant_id, id),
            CONSTRAINT ck_account_roles_one_kind_of_role CHECK ((builtin_role IS NULL) <> (custom_role_id IS NULL)),
            CONSTRAINT uq_account_roles_tenant_id_account_id_builtin_role UNIQUE (tenant_id, account_id, builtin_role),
            CONSTRAINT uq_account_roles_tenant_id_account_id_custom_role_id
                UNIQUE (tenant_id, account_id, custom_role_id),
            CONSTRAINT fk_account_roles_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_account_roles_role FOREIGN KEY(tenant_id, custom_role_id)
                REFERENCES roles (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_account_roles_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE TABLE password_history (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            account_id UUID NOT NULL,
            password_hash TEXT NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_password_history PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_password_history_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_password_history_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        CREATE INDEX ix_password_history_account ON password_history (tenant_id, account_id, created_at);
        """
    )
    for table in TABLES:
        tenant_table(table)
    # The migration runs as the owner, whom FORCE RLS binds too: the translation needs the token_lookup
    # read policy (0001) plus a one-off update policy, dropped at once.
    op.execute("CREATE POLICY migrate_scopes ON api_tokens FOR UPDATE TO bookwarden_owner USING (true)")
    op.get_bind().execute(
        sa.text(
            """
            UPDATE api_tokens SET scopes = ARRAY(
                SELECT DISTINCT unnest(
                    CASE WHEN 'library:read' = ANY(scopes) THEN CAST(:read AS varchar[]) ELSE '{}' END
                    || CASE WHEN 'library:write' = ANY(scopes) THEN CAST(:write AS varchar[]) ELSE '{}' END
                )
            )
            WHERE scopes && ARRAY['library:read', 'library:write']::varchar[]
            """
        ),
        {"read": READ, "write": WRITE},
    )
    op.execute("DROP POLICY migrate_scopes ON api_tokens")
    op.execute("UPDATE operator_tokens SET scopes = array_replace(scopes, 'tenants:manage', 'platform.tenants.manage')")
