"""Audit append: reads commit without waiting for the disk; each link hashed once; head made once.

A transaction that had written nothing before its audit events is a read: the only rows it
commits are those events. For such a transaction the append sets `synchronous_commit = off`
(for this transaction only), so its COMMIT returns without waiting for the WAL flush, which was
about two thirds of a patron read's time. What that costs, and only for reads: if the database
server itself crashes within the WAL writer's delay (200 ms by default, flushed within 3x that at
worst), the read events of that window are lost while their answers were already sent. The
database stays consistent (no corruption, no torn chain: lost transactions are a suffix of the
WAL, so the chain simply ends earlier). A transaction that changed anything keeps synchronous
commit: a change is never acknowledged without its event on disk.

The test `pg_current_xact_id_if_assigned() IS NULL` is exact, not a guess from the action's
name: PostgreSQL assigns a transaction id at the first write.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PLATFORM = "'00000000-0000-0000-0000-000000000000'::uuid"


def upgrade() -> None:
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
                -- Nothing written yet: a read. Its events need not wait for the disk (see the migration).
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
        """
    )


def downgrade() -> None:
    # The function of 0009 again: every commit waits for the disk.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION bookwarden_audit_append(p_tenant uuid, p_events jsonb)
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
        """
    )
