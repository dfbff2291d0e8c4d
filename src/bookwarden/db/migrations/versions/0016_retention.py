"""Retention periods per tenant and category, legal holds, purge run reports, the self-registration switch.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CATEGORIES = "'loan_history', 'searches', 'posts', 'inactive_patrons', 'exports', 'audit_segments'"
TABLES = ("retention_policies", "legal_holds", "retention_runs", "retention_run_counts", "self_registration_settings")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE retention_policies (
            tenant_id UUID NOT NULL,
            category VARCHAR(32) NOT NULL,
            keep_days INTEGER,
            approval_id UUID,
            changed_by UUID NOT NULL,
            changed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_retention_policies PRIMARY KEY (tenant_id, category),
            CONSTRAINT fk_retention_policies_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_retention_policies_category_known CHECK (category IN ({CATEGORIES})),
            CONSTRAINT ck_retention_policies_keep_days_positive CHECK (keep_days IS NULL OR keep_days > 0)
        );

        -- A hold outlives nothing it holds: it goes with its patron (whose deletion it blocks meanwhile).
        CREATE TABLE legal_holds (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            patron_id UUID,
            category VARCHAR(32),
            reason VARCHAR(500) NOT NULL,
            placed_by UUID NOT NULL,
            placed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            held_until TIMESTAMP WITH TIME ZONE,
            lifted_by UUID,
            lifted_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_legal_holds PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_legal_holds_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_legal_holds_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_legal_holds_category_known CHECK (category IS NULL OR category IN ({CATEGORIES})),
            CONSTRAINT ck_legal_holds_holds_something CHECK (patron_id IS NOT NULL OR category IS NOT NULL),
            CONSTRAINT ck_legal_holds_lifted_by_someone CHECK ((lifted_at IS NULL) = (lifted_by IS NULL)),
            CONSTRAINT ck_legal_holds_until_after_placed CHECK (held_until IS NULL OR held_until > placed_at)
        );
        CREATE INDEX ix_legal_holds_active ON legal_holds (tenant_id, patron_id) WHERE lifted_at IS NULL;

        CREATE TABLE retention_runs (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            triggered_by VARCHAR(16) NOT NULL,
            as_of TIMESTAMP WITH TIME ZONE NOT NULL,
            status VARCHAR(16) NOT NULL,
            started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            resumed INTEGER NOT NULL,
            finished_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_retention_runs PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_retention_runs_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_retention_runs_status_known CHECK (status IN ('running', 'completed')),
            CONSTRAINT ck_retention_runs_finished_when_completed
                CHECK ((status = 'completed') = (finished_at IS NOT NULL))
        );
        CREATE UNIQUE INDEX uq_retention_runs_running ON retention_runs (tenant_id) WHERE status = 'running';
        CREATE INDEX ix_retention_runs_started ON retention_runs (tenant_id, started_at);

        CREATE TABLE retention_run_counts (
            tenant_id UUID NOT NULL,
            run_id UUID NOT NULL,
            category VARCHAR(32) NOT NULL,
            keep_days INTEGER,
            cutoff TIMESTAMP WITH TIME ZONE,
            removed INTEGER NOT NULL,
            held INTEGER NOT NULL,
            errors INTEGER NOT NULL,
            last_error VARCHAR(200),
            done BOOLEAN NOT NULL,
            CONSTRAINT pk_retention_run_counts PRIMARY KEY (tenant_id, run_id, category),
            CONSTRAINT fk_retention_run_counts_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_retention_run_counts_run FOREIGN KEY(tenant_id, run_id)
                REFERENCES retention_runs (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_retention_run_counts_category_known CHECK (category IN ({CATEGORIES}))
        );

        CREATE TABLE self_registration_settings (
            tenant_id UUID NOT NULL,
            enabled BOOLEAN NOT NULL,
            timezone VARCHAR(64) NOT NULL,
            changed_by UUID NOT NULL,
            changed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_self_registration_settings PRIMARY KEY (tenant_id),
            CONSTRAINT fk_self_registration_settings_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id)
        );
        """
    )
    for table in TABLES:
        tenant_table(table)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
