"""Maker-checker approval requests; the database itself refuses a checker who is the maker.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE approval_requests (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            action VARCHAR(64) NOT NULL,
            params JSONB NOT NULL,
            requested_by UUID NOT NULL,
            requested_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            status VARCHAR(16) NOT NULL,
            decided_by UUID,
            decided_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_approval_requests PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_approval_requests_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_approval_requests_checker_is_not_maker
                CHECK (decided_by IS NULL OR decided_by <> requested_by),
            CONSTRAINT ck_approval_requests_known_status CHECK (status IN ('pending', 'approved', 'rejected'))
        );
        CREATE INDEX ix_approval_requests_pending ON approval_requests (tenant_id, status, requested_at);
        """
    )
    tenant_table("approval_requests")
