"""Complaints about the handling of personal data (tenant table, RLS) and the lookup of what is due.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # subject, body, contact_address and answer are AES-256-GCM ciphertext under the tenant's own key.
    # The deadlines are stored, not computed: the recurring job and the SLA view read them as data.
    op.execute(
        """
        CREATE TABLE complaints (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            patron_id UUID,
            account_id UUID,
            channel VARCHAR(16) NOT NULL,
            registered_by UUID NOT NULL,
            subject BYTEA NOT NULL,
            body BYTEA NOT NULL,
            contact_address BYTEA NOT NULL,
            answer BYTEA,
            status VARCHAR(16) NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            ack_due_at TIMESTAMP WITH TIME ZONE NOT NULL,
            at_risk_at TIMESTAMP WITH TIME ZONE NOT NULL,
            due_at TIMESTAMP WITH TIME ZONE NOT NULL,
            ack_message_id UUID,
            acknowledged_at TIMESTAMP WITH TIME ZONE,
            ack_escalated_at TIMESTAMP WITH TIME ZONE,
            at_risk_escalated_at TIMESTAMP WITH TIME ZONE,
            overdue_escalated_at TIMESTAMP WITH TIME ZONE,
            answered_at TIMESTAMP WITH TIME ZONE,
            answered_by UUID,
            CONSTRAINT pk_complaints PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_complaints_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_complaints_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_complaints_account FOREIGN KEY(tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_complaints_has_subject CHECK (patron_id IS NOT NULL OR account_id IS NOT NULL),
            CONSTRAINT ck_complaints_status_known CHECK (status IN ('open', 'answered')),
            CONSTRAINT ck_complaints_channel_known CHECK (channel IN ('patron', 'staff')),
            CONSTRAINT ck_complaints_answered_has_answer CHECK (
                (status = 'answered') = (answer IS NOT NULL AND answered_at IS NOT NULL AND answered_by IS NOT NULL)
            ),
            CONSTRAINT ck_complaints_deadlines_in_order
                CHECK (created_at < ack_due_at AND ack_due_at <= at_risk_at AND at_risk_at < due_at)
        );
        CREATE INDEX ix_complaints_open ON complaints (tenant_id, due_at) WHERE status = 'open';
        CREATE INDEX ix_complaints_patron ON complaints (tenant_id, patron_id);
        CREATE INDEX ix_complaints_account ON complaints (tenant_id, account_id);
        """
    )
    tenant_table("complaints")

    # The deadline job is a platform job (no tenant context): like bookwarden_outbox_orphans, one
    # narrow function running as the owner (which this read-only policy lets see complaint rows)
    # returns the ids of complaints with something to do, never their content (ciphertext anyway):
    # an acknowledgement that left but is not recorded yet, or a deadline passed and not escalated.
    op.execute("CREATE POLICY complaint_deadlines ON complaints FOR SELECT TO bookwarden_owner USING (true)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_complaints_due(max_rows integer)
        RETURNS TABLE (tenant_id uuid, complaint_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT c.tenant_id, c.id FROM complaints c
            WHERE (
                c.acknowledged_at IS NULL AND c.ack_message_id IS NOT NULL AND EXISTS (
                    SELECT 1 FROM outbox o
                    WHERE o.tenant_id = c.tenant_id AND o.id = c.ack_message_id AND o.status = 'sent'
                )
            ) OR (
                c.status = 'open' AND (
                    (c.acknowledged_at IS NULL AND c.ack_escalated_at IS NULL AND c.ack_due_at <= now())
                    OR (c.overdue_escalated_at IS NULL AND c.due_at <= now())
                    OR (c.at_risk_escalated_at IS NULL AND c.at_risk_at <= now() AND c.due_at > now())
                )
            )
            ORDER BY c.due_at
            LIMIT max_rows
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_complaints_due(integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_complaints_due(integer) TO bookwarden_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION bookwarden_complaints_due(integer)")
    op.execute("DROP TABLE complaints")
