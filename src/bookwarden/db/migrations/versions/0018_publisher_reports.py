"""Catalogue of titles and publishers, publisher reports and their privacy budget.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TABLES = ("publisher_reports", "publisher_budgets", "publisher_report_policies", "catalogue_items")


def upgrade() -> None:
    # Not personal: the library's own description of its items (privacy/report_models.py).
    op.execute(
        """
        CREATE TABLE catalogue_items (
            tenant_id UUID NOT NULL,
            item_id VARCHAR(64) NOT NULL,
            title VARCHAR(500) NOT NULL,
            publisher VARCHAR(200) NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_catalogue_items PRIMARY KEY (tenant_id, item_id),
            CONSTRAINT fk_catalogue_items_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_catalogue_items_not_blank
                CHECK (length(item_id) > 0 AND length(title) > 0 AND length(publisher) > 0)
        );
        CREATE INDEX ix_catalogue_items_publisher ON catalogue_items (tenant_id, publisher);
        """
    )
    # k never below 10, whatever the institution sets (the floor is the platform's promise).
    op.execute(
        """
        CREATE TABLE publisher_report_policies (
            tenant_id UUID NOT NULL,
            k INTEGER NOT NULL,
            noise BOOLEAN NOT NULL,
            epsilon_per_report DOUBLE PRECISION NOT NULL,
            publisher_budget DOUBLE PRECISION NOT NULL,
            max_cells_per_patron INTEGER NOT NULL,
            max_loans_per_cell INTEGER NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            updated_by UUID NOT NULL,
            CONSTRAINT pk_publisher_report_policies PRIMARY KEY (tenant_id),
            CONSTRAINT fk_publisher_report_policies_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_publisher_report_policies_k_at_least_floor CHECK (k >= 10),
            CONSTRAINT ck_publisher_report_policies_epsilon_positive
                CHECK (epsilon_per_report > 0 AND publisher_budget > 0),
            CONSTRAINT ck_publisher_report_policies_bounds_positive
                CHECK (max_cells_per_patron >= 1 AND max_loans_per_cell >= 1)
        );
        """
    )
    # The database refuses an overdraft as well as the service: spent never exceeds budget.
    op.execute(
        """
        CREATE TABLE publisher_budgets (
            tenant_id UUID NOT NULL,
            publisher VARCHAR(200) NOT NULL,
            budget DOUBLE PRECISION NOT NULL,
            spent DOUBLE PRECISION NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_publisher_budgets PRIMARY KEY (tenant_id, publisher),
            CONSTRAINT fk_publisher_budgets_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_publisher_budgets_budget_positive CHECK (budget > 0),
            CONSTRAINT ck_publisher_budgets_spent_within_budget CHECK (spent >= 0 AND spent <= budget)
        );
        """
    )
    op.execute(
        """
        CREATE TABLE publisher_reports (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            publisher VARCHAR(200) NOT NULL,
            first_month DATE NOT NULL,
            last_month DATE NOT NULL,
            k INTEGER NOT NULL,
            noise BOOLEAN NOT NULL,
            mechanism VARCHAR(64) NOT NULL,
            epsilon DOUBLE PRECISION,
            noise_scale DOUBLE PRECISION,
            sensitivity INTEGER,
            max_cells_per_patron INTEGER,
            max_loans_per_cell INTEGER,
            cells_published INTEGER NOT NULL,
            cells_suppressed INTEGER NOT NULL,
            body JSONB NOT NULL,
            released_by UUID NOT NULL,
            released_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_publisher_reports PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_publisher_reports_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_publisher_reports_k_at_least_floor CHECK (k >= 10),
            CONSTRAINT ck_publisher_reports_months_in_order CHECK (first_month <= last_month),
            CONSTRAINT ck_publisher_reports_noise_described CHECK (
                (noise AND epsilon > 0 AND noise_scale > 0 AND sensitivity >= 1) OR
                (NOT noise AND epsilon IS NULL AND noise_scale IS NULL AND sensitivity IS NULL)
            )
        );
        CREATE INDEX ix_publisher_reports_publisher ON publisher_reports (tenant_id, publisher, released_at);
        """
    )
    for table in ("catalogue_items", "publisher_report_policies", "publisher_budgets"):
        tenant_table(table)
    # A release is a record of what was disclosed: the app adds releases, never rewrites or removes one.
    tenant_table("publisher_reports", "SELECT, INSERT")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
