"""The audit trail: append-only events hash-chained per tenant, signed checkpoints, segment drops.

The app role cannot write an audit row directly: it calls `bookwarden_audit_append`, which
takes the tenant's chain head under a row lock, numbers the events, computes each chain hash
in the database and inserts them. So two transactions can never take the same sequence number
or predecessor, and the app cannot choose a row's hash. A trigger refuses UPDATE, DELETE and
TRUNCATE for every role; the one exception is `bookwarden_audit_drop_segment`, which removes a
whole sealed segment past its retention period and records that it did.

Events outside any institution (tenant administration, operator tokens) form the platform's
own chain under the nil tenant id.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PLATFORM = "'00000000-0000-0000-0000-000000000000'::uuid"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit_events (
            tenant_id UUID NOT NULL,
            seq BIGINT NOT NULL,
            id UUID NOT NULL,
            occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
            actor_kind VARCHAR(32) NOT NULL,
            actor_id UUID,
            grant_id UUID,
            action VARCHAR(64) NOT NULL,
            target_kind VARCHAR(64),
            target_id UUID,
            outcome VARCHAR(16) NOT NULL,
            source_address VARCHAR(64),
            user_agent VARCHAR(512),
            request_id VARCHAR(64),
            details JSONB NOT NULL,
            body_digest BYTEA NOT NULL,
            prev_hash BYTEA NOT NULL,
            hash BYTEA NOT NULL,
            CONSTRAINT pk_audit_events PRIMARY KEY (tenant_id, seq),
            CONSTRAINT uq_audit_events_id UNIQUE (tenant_id, id),
            CONSTRAINT ck_audit_events_known_outcome CHECK (outcome IN ('succeeded', 'denied', 'failed'))
        );
        CREATE INDEX ix_audit_events_time ON audit_events (tenant_id, occurred_at);
        CREATE INDEX ix_audit_events_actor ON audit_events (tenant_id, actor_id, occurred_at);
        CREATE INDEX ix_audit_events_target ON audit_events (tenant_id, target_id, occurred_at);
        CREATE INDEX ix_audit_events_action ON audit_events (tenant_id, action, occurred_at);

        CREATE TABLE audit_heads (
            tenant_id UUID NOT NULL,
            seq BIGINT NOT NULL,
            hash BYTEA NOT NULL,
            CONSTRAINT pk_audit_heads PRIMARY KEY (tenant_id)
        );

        CREATE TABLE audit_checkpoints (
            tenant_id UUID NOT NULL,
            tree_size BIGINT NOT NULL,
            root_hash BYTEA NOT NULL,
            last_hash BYTEA NOT NULL,
            frontier BYTEA[] NOT NULL,
            signed_at TIMESTAMP WITH TIME ZONE NOT NULL,
            key_id VARCHAR(64) NOT NULL,
            signature BYTEA NOT NULL,
            CONSTRAINT pk_audit_checkpoints PRIMARY KEY (tenant_id, tree_size)
        );

        CREATE TABLE audit_segment_drops (
            tenant_id UUID NOT NULL,
            upto_seq BIGINT NOT NULL,
            last_hash BYTEA NOT NULL,
            dropped_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_audit_segment_drops PRIMARY KEY (tenant_id, upto_seq)
        );
        """
    )
    for table in ("audit_events", "audit_heads", "audit_checkpoints", "audit_segment_drops"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        # Reads: the tenant in context only. Writes: the tenant in context, or the platform chain
        # when there is no context (operator actions outside any institution).
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = bookwarden_current_tenant()) "
            f"WITH CHECK (tenant_id = coalesce(bookwarden_current_tenant(), {PLATFORM}))"
        )
    # The definer functions below run as the owner and update heads of the chain they were asked for.
    op.execute(
        f"CREATE POLICY chain_writer ON audit_heads TO bookwarden_owner "
        f"USING (tenant_id = coalesce(bookwarden_current_tenant(), {PLATFORM})) WITH CHECK (true)"
    )
    op.execute(
        f"CREATE POLICY segment_reader ON audit_checkpoints FOR SELECT TO bookwarden_owner "
        f"USING (tenant_id = coalesce(bookwarden_current_tenant(), {PLATFORM}))"
    )
    op.execute(
        f"CREATE POLICY segment_dropper ON audit_events FOR ALL TO bookwarden_owner "
        f"USING (tenant_id = coalesce(bookwarden_current_tenant(), {PLATFORM})) WITH CHECK (true)"
    )
    grant_app("audit_events", "SELECT")
    grant_app("audit_heads", "SELECT")
    grant_app("audit_checkpoints", "SELECT, INSERT")
    grant_app("audit_segment_drops", "SELECT")
    op.execute(
        """
        CREATE FUNCTION bookwarden_audit_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events'
               AND current_setting('bookwarden.audit_segment_drop', true) = 'on' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END
        $$;
        """
    )
    for table in ("audit_events", "audit_heads", "audit_checkpoints", "audit_segment_drops"):
        if table != "audit_heads":  # the head moves forward on every append; only the functions write it
            op.execute(
                f"CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION bookwarden_audit_refuse_change()"
            )
        op.execute(
            f"CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION bookwarden_audit_refuse_change()"
        )
    op.execute(
        f"""
        CREATE FUNCTION bookwarden_audit_append(p_tenant uuid, p_events jsonb)
        RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        DECLARE
            head_seq bigint;
            head_hash bytea;
            e jsonb;
            digest bytea;
        BEGIN
            IF p_tenant IS DISTINCT FROM coalesce(bookwarden_current_tenant(), {PLATFORM}) THEN
                RAISE EXCEPTION 'audit events may only be appended to the chain of the tenant in context'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (p_tenant, 0, decode(repeat('00', 32), 'hex'))
                ON CONFLICT (tenant_id) DO NOTHING;
            -- The row lock orders every writer of this tenant's chain until its transaction ends.
            SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
            FOR e IN SELECT value FROM jsonb_array_elements(p_events) LOOP
                head_seq := head_seq + 1;
                digest := decode(e->>'body_digest', 'hex');
                INSERT INTO audit_events (
                    tenant_id, seq, id, occurred_at, actor_kind, actor_id, grant_id, action, target_kind,
                    target_id, outcome, source_address, user_agent, request_id, details, body_digest,
                    prev_hash, hash
                ) VALUES (
                    p_tenant, head_seq, (e->>'id')::uuid, (e->>'occurred_at')::timestamptz, e->>'actor_kind',
                    (e->>'actor_id')::uuid, (e->>'grant_id')::uuid, e->>'action', e->>'target_kind',
                    (e->>'target_id')::uuid, e->>'outcome', e->>'source_address', e->>'user_agent',
                    e->>'request_id', e->'details', digest,
                    head_hash, sha256(head_hash || int8send(head_seq) || digest)
                );
                head_hash := sha256(head_hash || int8send(head_seq) || digest);
            END LOOP;
            UPDATE audit_heads SET seq = head_seq, hash = head_hash WHERE tenant_id = p_tenant;
            RETURN head_seq;
        END
        $$;

        CREATE FUNCTION bookwarden_audit_drop_segment(p_tenant uuid, p_upto bigint, p_retention interval)
        RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        DECLARE
            boundary_hash bytea;
            newest timestamptz;
            dropped bigint;
        BEGIN
            IF p_tenant IS DISTINCT FROM coalesce(bookwarden_current_tenant(), {PLATFORM}) THEN
                RAISE EXCEPTION 'segments may only be dropped from the chain of the tenant in context'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            -- Only a sealed segment: it must end exactly at a signed checkpoint.
            SELECT c.last_hash INTO boundary_hash FROM audit_checkpoints c
                WHERE c.tenant_id = p_tenant AND c.tree_size = p_upto;
            IF boundary_hash IS NULL THEN
                RAISE EXCEPTION 'no checkpoint seals the audit chain at %', p_upto USING ERRCODE = 'check_violation';
            END IF;
            SELECT max(occurred_at) INTO newest FROM audit_events WHERE tenant_id = p_tenant AND seq <= p_upto;
            IF newest IS NULL THEN
                RETURN 0;
            END IF;
            IF newest > statement_timestamp() - p_retention THEN
                RAISE EXCEPTION 'the segment ending at % is still within its retention period', p_upto
                    USING ERRCODE = 'check_violation';
            END IF;
            PERFORM set_config('bookwarden.audit_segment_drop', 'on', true);
            DELETE FROM audit_events WHERE tenant_id = p_tenant AND seq <= p_upto;
            GET DIAGNOSTICS dropped = ROW_COUNT;
            PERFORM set_config('bookwarden.audit_segment_drop', 'off', true);
            INSERT INTO audit_segment_drops (tenant_id, upto_seq, last_hash) VALUES (p_tenant, p_upto, boundary_hash)
                ON CONFLICT DO NOTHING;
            RETURN dropped;
        END
        $$;

        REVOKE ALL ON FUNCTION bookwarden_audit_append(uuid, jsonb) FROM PUBLIC;
        REVOKE ALL ON FUNCTION bookwarden_audit_drop_segment(uuid, bigint, interval) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION bookwarden_audit_append(uuid, jsonb) TO bookwarden_app;
        GRANT EXECUTE ON FUNCTION bookwarden_audit_drop_segment(uuid, bigint, interval) TO bookwarden_app;
        """
    )
    op.execute("CREATE POLICY drop_recorder ON audit_segment_drops FOR INSERT TO bookwarden_owner WITH CHECK (true)")


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION bookwarden_audit_drop_segment(uuid, bigint, interval);
        DROP FUNCTION bookwarden_audit_append(uuid, jsonb);
        DROP TABLE audit_segment_drops, audit_checkpoints, audit_heads, audit_events;
        DROP FUNCTION bookwarden_audit_refuse_change();
        """
    )
