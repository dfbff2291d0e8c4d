"""Data-subject requests: queue per institution, lifecycle, identity verification codes.

Tenant tables (RLS): privacy_requests (the queue), privacy_request_challenges (one-time codes of the
unauthenticated form, hashed), privacy_request_policies (the institution's deadline), privacy_restrictions
(patrons whose data is restricted). Platform table: privacy_inquiries (a request sent to the platform
without naming an institution, until it is forwarded). A definer function lets the hourly job find
requests with a reminder, an escalation or a hold end due, returning ids only.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from bookwarden.db.migrations.rls import grant_app, tenant_table

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

KINDS = "'access', 'portability', 'rectification', 'erasure', 'restriction', 'objection'"
STATES = "'received', 'identity_verified', 'approved', 'denied', 'in_progress', 'completed', 'on_legal_hold'"
RESUMABLE = "'received', 'identity_verified', 'approved', 'in_progress'"


def upgrade() -> None:
    # patron_id has no foreign key on purpose: the request (and the proof that it was carried out) must
    # outlive the patron record an erasure removes. decision_reason and hold_reason are AES-256-GCM
    # ciphertext under the tenant's own key; corrections (the patron's own values) under the patron's
    # subject key, so the shred of an erasure covers them.
    op.execute(
        f"""
        CREATE TABLE privacy_requests (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            kind VARCHAR(16) NOT NULL,
            channel VARCHAR(16) NOT NULL,
            patron_id UUID NOT NULL,
            registered_by UUID,
            inquiry_id UUID,
            objection_scope VARCHAR(80),
            correction_fields VARCHAR(32)[],
            corrections BYTEA,
            state VARCHAR(24) NOT NULL,
            received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            due_at TIMESTAMP WITH TIME ZONE NOT NULL,
            verified_at TIMESTAMP WITH TIME ZONE,
            verification VARCHAR(16),
            approval_id UUID,
            decided_by UUID,
            decided_at TIMESTAMP WITH TIME ZONE,
            decision_reason BYTEA,
            started_at TIMESTAMP WITH TIME ZONE,
            completed_at TIMESTAMP WITH TIME ZONE,
            completed_by UUID,
            outcome_id UUID,
            held_from VARCHAR(24),
            held_by UUID,
            held_at TIMESTAMP WITH TIME ZONE,
            held_until TIMESTAMP WITH TIME ZONE,
            hold_reason BYTEA,
            reminded_at TIMESTAMP WITH TIME ZONE,
            escalated_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_privacy_requests PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_privacy_requests_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_privacy_requests_kind_known CHECK (kind IN ({KINDS})),
            CONSTRAINT ck_privacy_requests_state_known CHECK (state IN ({STATES})),
            CONSTRAINT ck_privacy_requests_channel_known CHECK (channel IN ('patron', 'staff', 'form')),
            CONSTRAINT ck_privacy_requests_objection_has_scope
                CHECK ((kind = 'objection') = (objection_scope IS NOT NULL)),
            CONSTRAINT ck_privacy_requests_rectification_has_corrections
                CHECK ((kind = 'rectification') = (corrections IS NOT NULL)),
            CONSTRAINT ck_privacy_requests_denied_has_reason
                CHECK (state <> 'denied' OR decision_reason IS NOT NULL),
            CONSTRAINT ck_privacy_requests_hold_resumes
                CHECK ((state = 'on_legal_hold') = (held_from IS NOT NULL)
                       AND (held_from IS NULL OR held_from IN ({RESUMABLE}))),
            CONSTRAINT ck_privacy_requests_due_after_receipt CHECK (due_at > received_at)
        );
        CREATE INDEX ix_privacy_requests_queue ON privacy_requests (tenant_id, state, due_at);
        CREATE INDEX ix_privacy_requests_patron ON privacy_requests (tenant_id, patron_id);
        """
    )
    tenant_table("privacy_requests")

    # One-time codes of the unauthenticated form. request_id is null for a decoy: the form answers
    # alike whether or not a patron matched, and a decoy behaves like a real code nobody received.
    op.execute(
        """
        CREATE TABLE privacy_request_challenges (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            request_id UUID,
            code_hash BYTEA NOT NULL,
            attempts INTEGER DEFAULT 0 NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            verified_at TIMESTAMP WITH TIME ZONE,
            CONSTRAINT pk_privacy_request_challenges PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_privacy_request_challenges_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_privacy_request_challenges_request FOREIGN KEY(tenant_id, request_id)
                REFERENCES privacy_requests (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_privacy_request_challenges_attempts_counted CHECK (attempts >= 0)
        );
        CREATE INDEX ix_privacy_request_challenges_request ON privacy_request_challenges (tenant_id, request_id);
        """
    )
    tenant_table("privacy_request_challenges")

    op.execute(
        """
        CREATE TABLE privacy_request_policies (
            tenant_id UUID NOT NULL,
            respond_within_days INTEGER NOT NULL,
            remind_before_days INTEGER NOT NULL,
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            updated_by UUID,
            CONSTRAINT pk_privacy_request_policies PRIMARY KEY (tenant_id),
            CONSTRAINT fk_privacy_request_policies_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_privacy_request_policies_days_in_range
                CHECK (respond_within_days BETWEEN 1 AND 90 AND remind_before_days BETWEEN 0 AND 30)
        );
        """
    )
    tenant_table("privacy_request_policies")

    op.execute(
        """
        CREATE TABLE privacy_restrictions (
            tenant_id UUID NOT NULL,
            patron_id UUID NOT NULL,
            request_id UUID,
            restricted_by UUID NOT NULL,
            restricted_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_privacy_restrictions PRIMARY KEY (tenant_id, patron_id),
            CONSTRAINT fk_privacy_restrictions_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_privacy_restrictions_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE
        );
        """
    )
    tenant_table("privacy_restrictions")

    # A platform table: no institution is known yet. The contact address is sealed under a key of
    # its own in the platform's keyring slot, shredded when the inquiry is forwarded or lapses.
    op.execute(
        f"""
        CREATE TABLE privacy_inquiries (
            id UUID NOT NULL,
            reference_hash BYTEA NOT NULL,
            kind VARCHAR(16) NOT NULL,
            objection_scope VARCHAR(80),
            contact_address BYTEA,
            status VARCHAR(16) NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
            forwarded_at TIMESTAMP WITH TIME ZONE,
            forwarded_to UUID,
            CONSTRAINT pk_privacy_inquiries PRIMARY KEY (id),
            CONSTRAINT uq_privacy_inquiries_reference_hash UNIQUE (reference_hash),
            CONSTRAINT fk_privacy_inquiries_forwarded_to FOREIGN KEY(forwarded_to) REFERENCES tenants (id),
            CONSTRAINT ck_privacy_inquiries_kind_known CHECK (kind IN ({KINDS})),
            CONSTRAINT ck_privacy_inquiries_status_known CHECK (status IN ('pending', 'forwarded', 'lapsed')),
            CONSTRAINT ck_privacy_inquiries_pending_has_contact
                CHECK ((status = 'pending') = (contact_address IS NOT NULL)),
            CONSTRAINT ck_privacy_inquiries_forwarded_names_institution
                CHECK ((status = 'forwarded') = (forwarded_to IS NOT NULL AND forwarded_at IS NOT NULL))
        );
        """
    )
    grant_app("privacy_inquiries", "SELECT, INSERT, UPDATE")

    # The hourly job runs without a tenant context: like bookwarden_complaints_due, one narrow definer
    # function (the owner reads through a read-only policy) returns the ids of requests with something
    # due, never their content: a reminder before the due date, an escalation after it, a hold that ended,
    # a form never confirmed (its code long expired: the request lapses).
    for table in ("privacy_requests", "privacy_request_policies"):
        op.execute(f"CREATE POLICY privacy_request_deadlines ON {table} FOR SELECT TO bookwarden_owner USING (true)")
    op.execute(
        """
        CREATE FUNCTION bookwarden_privacy_requests_due(max_rows integer)
        RETURNS TABLE (tenant_id uuid, request_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
            SELECT r.tenant_id, r.id FROM privacy_requests r
            LEFT JOIN privacy_request_policies p ON p.tenant_id = r.tenant_id
            WHERE (
                r.state IN ('identity_verified', 'approved', 'in_progress') AND (
                    (r.escalated_at IS NULL AND r.due_at <= now())
                    OR (r.reminded_at IS NULL AND r.due_at > now()
                        AND r.due_at - make_interval(days => coalesce(p.remind_before_days, 7)) <= now())
                )
            ) OR (r.state = 'on_legal_hold' AND r.held_until IS NOT NULL AND r.held_until <= now())
            OR (r.state = 'received' AND r.channel = 'form' AND r.received_at <= now() - interval '1 day')
            ORDER BY r.due_at
            LIMIT max_rows
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bookwarden_privacy_requests_due(integer) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION bookwarden_privacy_requests_due(integer) TO bookwarden_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION bookwarden_privacy_requests_due(integer)")
    op.execute("DROP TABLE privacy_inquiries")
    op.execute("DROP TABLE privacy_restrictions")
    op.execute("DROP TABLE privacy_request_policies")
    op.execute("DROP TABLE privacy_request_challenges")
    op.execute("DROP TABLE privacy_requests")
