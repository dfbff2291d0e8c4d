"""Outbox: outbound mail of each tenant, encrypted, under RLS; a narrow sweep lookup.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # category and status are text with a CHECK rather than enum types: adding a category
    # later is a constraint swap, not ALTER TYPE.
    op.execute(
        """
        CREATE TABLE outbox (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            category TEXT NOT NULL,
            to_address BYTEA NOT NULL,
            subject BYTEA NOT NULL,
            body BYTEA NOT NULL,
            key_version INTEGER NOT NULL,
            headers JSONB DEFAULT '{}'::jsonb NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER DEFAULT 0 NOT NULL,
            last_error TEXT,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            send_after TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            sent_at TIMESTAMP WITH TIME ZONE,
            message_id TEXT,
            CONSTRAINT pk_outbox PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_outbox_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_outbox_category_known CHECK (category IN ('service', 'security', 'optional')),
            CONSTRAINT ck_outbox_status_known CHECK (status IN ('queued', 'sent', 'failed')),
            CONSTRAINT ck_outbox_attempts_not_negative CHECK (attempts >= 0),
            CONSTRAINT ck_outbox_sent_has_time_and_id
                CHECK ((status = 'sent') = (sent_at IS NOT NULL AND message_id IS NOT NULL))
        );
        CREATE INDEX ix_outbox_queued ON outbox (send_after) WHERE status = 'queued';
        """
    )
    tenant_table("outbox")

    # The sweep (a platform job, no tenant context) must find queued messages of every tenant
    # whose delivery job was lost. Like bookwarden_resolve_api_token, one narrow function
    # running as the owner (which this read-only policy lets see outbox rows) returns ids and
    # attempt counts only: never an address, subject or body, which are ciphertext anyway.
    op.execute("CREATE POLICY outbox_sweep ON outbox FOR SELECT TO bookwarden_owner USING (true)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_outbox_orphans(max_rows integer)
        RETURNS TABLE (tenant_id uuid, message_id uuid, attempts integer)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT o.tenant_id, o.id, o.attempts FROM outbox o
            WHERE o.status = 'queued' AND o.send_after <= now()
              AND NOT EXISTS (
                  SELECT 1 FROM jobs j
                  WHERE j.kind = 'notify.deliver' AND j.status IN ('queued', 'running')
                    AND j.payload @> jsonb_build_object('tenant_id', o.tenant_id::text, 'message_id', o.id::text)
              )
            ORDER BY o.send_after
            LIMIT max_rows
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_outbox_orphans(integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_outbox_orphans(integer) TO bookwarden_app")
