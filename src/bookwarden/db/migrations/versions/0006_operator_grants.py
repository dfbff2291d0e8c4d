"""Operator access grants, and the two narrow cross-tenant functions they need.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE operator_grants (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            operator_id UUID NOT NULL,
            scope VARCHAR(16) NOT NULL,
            justification VARCHAR(2000) NOT NULL,
            ticket VARCHAR(200) NOT NULL,
            starts_at TIMESTAMP WITH TIME ZONE NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            status VARCHAR(16) NOT NULL,
            break_glass BOOLEAN NOT NULL,
            decided_by UUID,
            decided_at TIMESTAMP WITH TIME ZONE,
            first_used_at TIMESTAMP WITH TIME ZONE,
            ended_at TIMESTAMP WITH TIME ZONE,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_operator_grants PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_operator_grants_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_operator_grants_at_most_8h
                CHECK (expires_at > starts_at AND expires_at <= starts_at + interval '8 hours'),
            CONSTRAINT ck_operator_grants_known_scope CHECK (scope IN ('read', 'read_write')),
            CONSTRAINT ck_operator_grants_known_status
                CHECK (status IN ('requested', 'approved', 'denied', 'revoked', 'expired'))
        );
        CREATE INDEX ix_operator_grants_id ON operator_grants (id);
        CREATE INDEX ix_operator_grants_live ON operator_grants (status, expires_at);
        """
    )
    tenant_table("operator_grants")
    # Two questions are asked before any tenant context exists, each answered with ids only:
    # "which tenant does this live grant of mine open?" and "which approved grants have run out?".
    op.execute("CREATE POLICY grant_lookup ON operator_grants FOR SELECT TO bookwarden_owner USING (true)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_resolve_operator_grant(grant_id uuid, operator uuid)
        RETURNS TABLE (tenant_id uuid, scope varchar)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT g.tenant_id, g.scope FROM operator_grants g
            WHERE g.id = grant_id AND g.operator_id = operator AND g.status = 'approved'
              AND statement_timestamp() >= g.starts_at AND statement_timestamp() < g.expires_at
        $$;
        CREATE FUNCTION bookwarden_ended_operator_grants(max_rows integer)
        RETURNS TABLE (tenant_id uuid, grant_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT g.tenant_id, g.id FROM operator_grants g
            WHERE g.status IN ('approved', 'requested') AND g.expires_at <= statement_timestamp()
            ORDER BY g.expires_at LIMIT max_rows
        $$;
        REVOKE ALL ON FUNCTION bookwarden_resolve_operator_grant(uuid, uuid) FROM PUBLIC;
        REVOKE ALL ON FUNCTION bookwarden_ended_operator_grants(integer) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION bookwarden_resolve_operator_grant(uuid, uuid) TO bookwarden_app;
        GRANT EXECUTE ON FUNCTION bookwarden_ended_operator_grants(integer) TO bookwarden_app;
        """
    )
