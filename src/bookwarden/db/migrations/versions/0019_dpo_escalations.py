"""Escalations to the platform's data protection officer: overdue requests, complaints at risk.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Metadata only (which institution, which request or complaint, how late), never the matter
    # itself: the DPO oversees the institutions' handling without reaching their patrons' data.
    # A tenant table: the hourly deadline jobs raise them inside the tenant's own transaction.
    op.execute(
        """
        CREATE TABLE dpo_escalations (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            subject_kind VARCHAR(16) NOT NULL,
            subject_id UUID NOT NULL,
            level VARCHAR(16) NOT NULL,
            due_at TIMESTAMP WITH TIME ZONE NOT NULL,
            raised_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            acknowledged_at TIMESTAMP WITH TIME ZONE,
            acknowledged_by UUID,
            CONSTRAINT pk_dpo_escalations PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_dpo_escalations_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT uq_dpo_escalations_once UNIQUE (tenant_id, subject_kind, subject_id, level),
            CONSTRAINT ck_dpo_escalations_subject_kind_known CHECK (subject_kind IN ('privacy_request', 'complaint')),
            CONSTRAINT ck_dpo_escalations_level_known CHECK (level IN ('unacknowledged', 'at_risk', 'overdue')),
            CONSTRAINT ck_dpo_escalations_acknowledged_by_someone
                CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
        );
        CREATE INDEX ix_dpo_escalations_due ON dpo_escalations (due_at);
        """
    )
    # Raised and acknowledged, never deleted by the app: the oversight record outlives the matter.
    tenant_table("dpo_escalations", "SELECT, INSERT, UPDATE")

    # The DPO's list spans institutions: one narrow definer function (the owner reads through
    # read-only policies) returns the metadata and the matter's state, never its content. Inside an
    # institution's transaction it reads empty: no tenant code path reaches other institutions' rows.
    op.execute("CREATE POLICY dpo_oversight ON dpo_escalations FOR SELECT TO bookwarden_owner USING (true)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_dpo_escalations(view text, max_rows integer)
        RETURNS TABLE (tenant_id uuid, tenant_slug text, id uuid, subject_kind text, subject_id uuid,
                       level text, due_at timestamptz, raised_at timestamptz, acknowledged_at timestamptz,
                       acknowledged_by uuid, subject_state text)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            WITH rows AS (
                SELECT e.tenant_id, t.slug::text AS tenant_slug, e.id, e.subject_kind::text, e.subject_id,
                       e.level::text, e.due_at, e.raised_at, e.acknowledged_at, e.acknowledged_by,
                       coalesce(r.state, c.status, 'gone')::text AS subject_state
                FROM dpo_escalations e
                JOIN tenants t ON t.id = e.tenant_id
                LEFT JOIN privacy_requests r
                    ON e.subject_kind = 'privacy_request' AND r.tenant_id = e.tenant_id AND r.id = e.subject_id
                LEFT JOIN complaints c
                    ON e.subject_kind = 'complaint' AND c.tenant_id = e.tenant_id AND c.id = e.subject_id
            )
            SELECT * FROM rows
            WHERE bookwarden_current_tenant() IS NULL
              AND (view = 'all'
                   OR (subject_state NOT IN ('completed', 'denied', 'answered', 'gone')
                       AND (view = 'open' OR acknowledged_at IS NULL)))
            ORDER BY due_at, raised_at, id
            LIMIT max_rows
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_dpo_escalations(text, integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_dpo_escalations(text, integer) TO bookwarden_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION bookwarden_dpo_escalations(text, integer)")
    op.execute("DROP TABLE dpo_escalations")
