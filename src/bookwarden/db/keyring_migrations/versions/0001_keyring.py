"""Keyring: wrapped tenant keys and subject keys.

Revision ID: k0001
Revises:
"""

from alembic import op

revision = "k0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenant_keys (
            tenant_id UUID NOT NULL,
            purpose VARCHAR(16) NOT NULL,
            version INTEGER NOT NULL,
            wrapped BYTEA,
            master_key_id VARCHAR(16) NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            destroyed_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_tenant_keys PRIMARY KEY (tenant_id, purpose, version)
        );
        CREATE TABLE subject_keys (
            tenant_id UUID NOT NULL,
            subject_id UUID NOT NULL,
            wrapped BYTEA NOT NULL,
            tenant_key_version INTEGER NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_subject_keys PRIMARY KEY (tenant_id, subject_id)
        );
        CREATE INDEX ix_subject_keys_version ON subject_keys (tenant_id, tenant_key_version);
        GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_keys, subject_keys TO bookwarden_app;
        """
    )
