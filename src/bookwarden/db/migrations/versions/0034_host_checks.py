"""File integrity baselines and host-check runs (platform tables).

Written with down_revision 0031 on a branch of its own; the lead re-chains it at merge.

Revision ID: 0034
Revises: 0033
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

TABLES = ("fim_baselines", "fim_pages", "host_scans")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fim_baselines (
            id UUID NOT NULL,
            status VARCHAR(16) NOT NULL,
            algorithm VARCHAR(16) NOT NULL,
            roots JSONB NOT NULL,
            entries INTEGER NOT NULL,
            entries_digest BYTEA NOT NULL,
            key_id VARCHAR(64) NOT NULL,
            signature BYTEA NOT NULL,
            signed_at TIMESTAMP WITH TIME ZONE NOT NULL,
            proposed_by UUID NOT NULL,
            proposed_by_person UUID,
            decided_by UUID,
            decided_by_person UUID,
            decided_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_fim_baselines PRIMARY KEY (id),
            CONSTRAINT ck_fim_baselines_checker_is_not_maker CHECK (decided_by IS NULL OR decided_by <> proposed_by),
            CONSTRAINT ck_fim_baselines_checker_is_not_maker_person CHECK (
                decided_by_person IS NULL OR proposed_by_person IS NULL OR decided_by_person <> proposed_by_person
            ),
            CONSTRAINT ck_fim_baselines_known_status
                CHECK (status IN ('proposed', 'active', 'superseded', 'rejected'))
        );
        -- One baseline is compared with at a time.
        CREATE UNIQUE INDEX uq_fim_baselines_one_active ON fim_baselines (status) WHERE status = 'active';
        CREATE TABLE fim_pages (
            baseline_id UUID NOT NULL,
            page INTEGER NOT NULL,
            records BYTEA NOT NULL,
            CONSTRAINT pk_fim_pages PRIMARY KEY (baseline_id, page),
            CONSTRAINT fk_fim_pages_baseline_id FOREIGN KEY (baseline_id) REFERENCES fim_baselines (id)
                ON DELETE CASCADE
        );
        CREATE TABLE host_scans (
            id UUID NOT NULL,
            check_kind VARCHAR(16) NOT NULL,
            baseline_id UUID,
            "full" BOOLEAN NOT NULL,
            started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            finished_at TIMESTAMP WITH TIME ZONE,
            files INTEGER NOT NULL,
            hashed INTEGER NOT NULL,
            findings INTEGER NOT NULL,
            details JSONB DEFAULT '[]'::jsonb NOT NULL,
            run_by UUID,
            CONSTRAINT pk_host_scans PRIMARY KEY (id),
            CONSTRAINT ck_host_scans_known_check CHECK (check_kind IN ('fim', 'rootcheck'))
        );
        CREATE INDEX ix_host_scans_kind_started ON host_scans (check_kind, started_at);
        """
    )
    # Platform tables: seen only by a transaction without tenant context (as backups are).
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY platform_only ON {table} "
            "USING (bookwarden_current_tenant() IS NULL) WITH CHECK (bookwarden_current_tenant() IS NULL)"
        )
    grant_app("fim_baselines", "SELECT, INSERT, UPDATE")
    # Pages of a baseline that is superseded or rejected are dropped; a baseline's pages are never updated.
    grant_app("fim_pages", "SELECT, INSERT, DELETE")
    grant_app("host_scans", "SELECT, INSERT, UPDATE")


def downgrade() -> None:
    op.execute("DROP TABLE host_scans")
    op.execute("DROP TABLE fim_pages")
    op.execute("DROP TABLE fim_baselines")
