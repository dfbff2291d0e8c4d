"""The backup catalogue and the restore-drill history (platform tables).

Revision ID: 0031
Revises: 0030
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

TABLES = ("backups", "backup_drills")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE backups (
            id UUID NOT NULL,
            kind VARCHAR(16) NOT NULL,
            institution_id UUID,
            status VARCHAR(16) NOT NULL,
            directory TEXT NOT NULL,
            started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            finished_at TIMESTAMP WITH TIME ZONE,
            stored_bytes BIGINT,
            chunks INTEGER,
            manifest_sha256 VARCHAR(64),
            master_key_id VARCHAR(16),
            error TEXT,
            removed_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_backups PRIMARY KEY (id),
            CONSTRAINT ck_backups_kind_known CHECK (kind IN ('platform', 'tenant', 'keyring')),
            CONSTRAINT ck_backups_status_known CHECK (status IN ('running', 'complete', 'failed', 'removed')),
            CONSTRAINT ck_backups_tenant_only_for_tenant_kind CHECK ((kind = 'tenant') = (institution_id IS NOT NULL)),
            -- Complete means signed: a backup without a manifest never counts as one.
            CONSTRAINT ck_backups_complete_has_manifest CHECK (status <> 'complete' OR manifest_sha256 IS NOT NULL)
        );
        CREATE INDEX ix_backups_kind_status_started ON backups (kind, status, started_at);
        CREATE TABLE backup_drills (
            id UUID NOT NULL,
            backup_id UUID NOT NULL,
            keyring_backup_id UUID,
            started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            finished_at TIMESTAMP WITH TIME ZONE,
            outcome VARCHAR(16) NOT NULL,
            steps JSONB DEFAULT '[]'::jsonb NOT NULL,
            failure TEXT,
            CONSTRAINT pk_backup_drills PRIMARY KEY (id),
            CONSTRAINT fk_backup_drills_backup_id FOREIGN KEY (backup_id) REFERENCES backups (id),
            CONSTRAINT fk_backup_drills_keyring_backup_id FOREIGN KEY (keyring_backup_id) REFERENCES backups (id),
            CONSTRAINT ck_backup_drills_outcome_known CHECK (outcome IN ('running', 'passed', 'failed'))
        );
        CREATE INDEX ix_backup_drills_started ON backup_drills (started_at);
        """
    )
    # Platform tables: seen only by a transaction without tenant context (as operator accounts are).
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY platform_only ON {table} "
            "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
        )
        # No DELETE: an expired backup's row stays as history (status removed), and drills point at it.
        grant_app(table, "SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.execute("DROP TABLE backup_drills")
    op.execute("DROP TABLE backups")
