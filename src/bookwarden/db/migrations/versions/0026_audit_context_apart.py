"""The audit trail stops keeping source addresses and user agents for as long as its events.

From this migration an event is appended in format 2: its hashed body holds, instead of the source
address and user agent, `context_commitment`, HMAC-SHA256 keyed by a random 32-byte key made for that
event alone over the canonical encoding of the two values (audit/events.py). The values and that key go
to `audit_event_contexts`, one row per event that has either value, keyed by the event's place in its
chain. Deleting that row (the period job after at most 90 days, the erasure of a patron the event is
about) leaves the commitment in the chain: the chain and its checkpoints verify as before, and nobody,
the platform included, can test a guessed address against a commitment whose key is gone. While the
row is there, `audit verify` recomputes the commitment from it, so a value changed in place is caught.

Events appended before this migration are format 1 (the column's default): their address and user agent
stay inside their hashed body, where they were hashed, until their segment is dropped; removing them
would break their hash and every link after it. `bookwarden_audit_append` still accepts format 1 events
(a process of the previous release during an upgrade).

The append stays one round trip: the function inserts every event as before and the batch's contexts
with one INSERT ... SELECT, none when no event of the batch has an address or a user agent.
`bookwarden_audit_drop_segment` now also removes the contexts of the segment it drops.

Revision ID: 0026
Revises: 0025
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

PLATFORM = "'00000000-0000-0000-0000-000000000000'::uuid"


def upgrade() -> None:
    # ADD COLUMN with a constant default rewrites no row and fires no trigger: every existing event
    # reads as format 1, exactly as it was hashed.
    op.execute(
        """
        ALTER TABLE audit_events
            ADD COLUMN format SMALLINT DEFAULT 1 NOT NULL,
            ADD COLUMN context_commitment BYTEA,
            ADD CONSTRAINT ck_audit_events_known_format CHECK (format IN (1, 2));

        CREATE TABLE audit_event_contexts (
            tenant_id UUID NOT NULL,
            seq BIGINT NOT NULL,
            occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
            source_address VARCHAR(64),
            user_agent VARCHAR(512),
            commitment_key BYTEA NOT NULL,
            CONSTRAINT pk_audit_event_contexts PRIMARY KEY (tenant_id, seq)
        );
        CREATE INDEX ix_audit_event_contexts_time ON audit_event_contexts (tenant_id, occurred_at);
        """
    )
    op.execute("ALTER TABLE audit_event_contexts ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE audit_event_contexts FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON audit_event_contexts "
        "USING (tenant_id = bookwarden_current_tenant()) "
        f"WITH CHECK (tenant_id = coalesce(bookwarden_current_tenant(), {PLATFORM}))"
    )
    # The definer functions (append, segment drop) run as the owner on the chain they were asked for.
    op.execute(
        "CREATE POLICY chain_writer ON audit_event_contexts FOR ALL TO bookwarden_owner "
        f"USING (tenant_id = coalesce(bookwarden_current_tenant(), {PLATFORM})) WITH CHECK (true)"
    )
    # The app reads and forgets contexts; it never writes or changes one (the append function does).
    grant_app("audit_event_contexts", "SELECT, DELETE")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION bookwarden_audit_append(p_tenant uuid, p_events jsonb)
        RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        DECLARE
            head_seq bigint;
            first_seq bigint;
            head_hash bytea;
            link bytea;
            e jsonb;
            digest bytea;
            apart boolean;
            with_context boolean := false;
        BEGIN
            IF p_tenant IS DISTINCT FROM coalesce(bookwarden_current_tenant(), {PLATFORM}) THEN
                RAISE EXCEPTION 'audit events may only be appended to the chain of the tenant in context'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF pg_current_xact_id_if_assigned() IS NULL THEN
                -- Nothing written yet: a read. Its events need not wait for the disk (migration 0013).
                PERFORM set_config('synchronous_commit', 'off', true);
            END IF;
            -- The row lock orders every writer of this tenant's chain until its transaction ends.
            SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (p_tenant, 0, decode(repeat('00', 32), 'hex'))
                    ON CONFLICT (tenant_id) DO NOTHING;
                SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_heads h
                    WHERE h.tenant_id = p_tenant FOR UPDATE;
            END IF;
            first_seq := head_seq + 1;
            FOR e IN SELECT value FROM jsonb_array_elements(p_events) LOOP
                head_seq := head_seq + 1;
                digest := decode(e->>'body_digest', 'hex');
                link := sha256(head_hash || int8send(head_seq) || digest);
                -- Format 2: the address and user agent go apart (below); the event keeps their commitment.
                apart := coalesce((e->>'format')::smallint, 1) = 2;
                with_context := with_context OR (apart AND e ? 'commitment_key');
                INSERT INTO audit_events (
                    tenant_id, seq, id, occurred_at, actor_kind, actor_id, grant_id, action, target_kind,
                    target_id, outcome, source_address, user_agent, request_id, details, body_digest,
                    prev_hash, hash, format, context_commitment
                ) VALUES (
                    p_tenant, head_seq, (e->>'id')::uuid, (e->>'occurred_at')::timestamptz, e->>'actor_kind',
                    (e->>'actor_id')::uuid, (e->>'grant_id')::uuid, e->>'action', e->>'target_kind',
                    (e->>'target_id')::uuid, e->>'outcome',
                    CASE WHEN apart THEN NULL ELSE e->>'source_address' END,
                    CASE WHEN apart THEN NULL ELSE e->>'user_agent' END,
                    e->>'request_id', e->'details', digest, head_hash, link,
                    CASE WHEN apart THEN 2 ELSE 1 END,
                    CASE WHEN apart THEN decode(e->>'context_commitment', 'hex') END
                );
                head_hash := link;
            END LOOP;
            IF with_context THEN
                -- One statement for the whole batch: the events are numbered in array order from first_seq.
                INSERT INTO audit_event_contexts
                    (tenant_id, seq, occurred_at, source_address, user_agent, commitment_key)
                SELECT p_tenant, first_seq + x.n - 1, (x.e->>'occurred_at')::timestamptz, x.e->>'source_address',
                       x.e->>'user_agent', decode(x.e->>'commitment_key', 'hex')
                  FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(e, n)
                 WHERE x.e->>'format' = '2' AND x.e ? 'commitment_key';
            END IF;
            UPDATE audit_heads SET seq = head_seq, hash = head_hash WHERE tenant_id = p_tenant;
            RETURN head_seq;
        END
        $$;

        CREATE OR REPLACE FUNCTION bookwarden_audit_drop_segment(p_tenant uuid, p_upto bigint, p_retention interval)
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
            DELETE FROM audit_event_contexts WHERE tenant_id = p_tenant AND seq <= p_upto;
            PERFORM set_config('bookwarden.audit_segment_drop', 'on', true);
            DELETE FROM audit_events WHERE tenant_id = p_tenant AND seq <= p_upto;
            GET DIAGNOSTICS dropped = ROW_COUNT;
            PERFORM set_config('bookwarden.audit_segment_drop', 'off', true);
            INSERT INTO audit_segment_drops (tenant_id, upto_seq, last_hash) VALUES (p_tenant, p_upto, boundary_hash)
                ON CONFLICT DO NOTHING;
            RETURN dropped;
        END
        $$;
        """
    )


def downgrade() -> None:
    # Format 2 events cannot be told apart from format 1 without the column: refuse rather than leave a
    # trail that no longer verifies.
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM audit_events WHERE format = 2) THEN
                RAISE EXCEPTION 'audit events of format 2 exist: downgrading below 0026 would make them unverifiable';
            END IF;
        END
        $$;
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION bookwarden_audit_append(p_tenant uuid, p_events jsonb)
        RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        DECLARE
            head_seq bigint;
            head_hash bytea;
            link bytea;
            e jsonb;
            digest bytea;
        BEGIN
            IF p_tenant IS DISTINCT FROM coalesce(bookwarden_current_tenant(), {PLATFORM}) THEN
                RAISE EXCEPTION 'audit events may only be appended to the chain of the tenant in context'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF pg_current_xact_id_if_assigned() IS NULL THEN
                PERFORM set_config('synchronous_commit', 'off', true);
            END IF;
            SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_heads h WHERE h.tenant_id = p_tenant FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (p_tenant, 0, decode(repeat('00', 32), 'hex'))
                    ON CONFLICT (tenant_id) DO NOTHING;
                SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_heads h
                    WHERE h.tenant_id = p_tenant FOR UPDATE;
            END IF;
            FOR e IN SELECT value FROM jsonb_array_elements(p_events) LOOP
                head_seq := head_seq + 1;
                digest := decode(e->>'body_digest', 'hex');
                link := sha256(head_hash || int8send(head_seq) || digest);
                INSERT INTO audit_events (
                    tenant_id, seq, id, occurred_at, actor_kind, actor_id, grant_id, action, target_kind,
                    target_id, outcome, source_address, user_agent, request_id, details, body_digest,
                    prev_hash, hash
                ) VALUES (
                    p_tenant, head_seq, (e->>'id')::uuid, (e->>'occurred_at')::timestamptz, e->>'actor_kind',
                    (e->>'actor_id')::uuid, (e->>'grant_id')::uuid, e->>'action', e->>'target_kind',
                    (e->>'target_id')::uuid, e->>'outcome', e->>'source_address', e->>'user_agent',
                    e->>'request_id', e->'details', digest, head_hash, link
                );
                head_hash := link;
            END LOOP;
            UPDATE audit_heads SET seq = head_seq, hash = head_hash WHERE tenant_id = p_tenant;
            RETURN head_seq;
        END
        $$;

        CREATE OR REPLACE FUNCTION bookwarden_audit_drop_segment(p_tenant uuid, p_upto bigint, p_retention interval)
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

        DROP TABLE audit_event_contexts;
        ALTER TABLE audit_events DROP CONSTRAINT ck_audit_events_known_format,
            DROP COLUMN context_commitment, DROP COLUMN format;
        """
    )
