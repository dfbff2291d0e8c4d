"""Consent records, communication preferences, cookie choices, objections and disclosures.

consent_records, cookie_choices, objections, disclosures and disclosure_subjects are histories:
the application role may SELECT and INSERT them, never UPDATE or DELETE, and a trigger refuses
UPDATE to every role. Rows still leave with their patron: a foreign-key cascade runs as the
table's owner, and the trigger does not stand in its way (it refuses UPDATE only).

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

HISTORIES = ["consent_records", "cookie_choices", "objections", "disclosures", "disclosure_subjects"]
KINDS = "'usage_analysis', 'service_provider', 'legal_request', 'other'"
BASES = "'consent', 'contract', 'legal_obligation', 'vital_interests', 'public_task', 'legitimate_interests'"


def upgrade() -> None:
    op.execute(
        r"""
        CREATE TABLE consent_records (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            patron_id UUID NOT NULL,
            purpose VARCHAR(100) NOT NULL,
            given BOOLEAN NOT NULL,
            method VARCHAR(16) NOT NULL,
            notice_version VARCHAR(40),
            recorded_by UUID,
            request_id UUID,
            recorded_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
            CONSTRAINT pk_consent_records PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_consent_records_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_consent_records_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_consent_records_method_known
                CHECK (method IN ('portal', 'staff', 'form', 'unsubscribe_link', 'request')),
            CONSTRAINT ck_consent_records_purpose_is_a_name CHECK (purpose ~ '^[a-z0-9_]+(:[a-z0-9_]+)*$'),
            CONSTRAINT ck_consent_records_given_names_its_notice CHECK (NOT given OR notice_version IS NOT NULL)
        );
        CREATE INDEX ix_consent_records_latest ON consent_records (tenant_id, patron_id, purpose, seq);

        CREATE TABLE cookie_choices (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            visitor_id UUID NOT NULL,
            patron_id UUID,
            analytics BOOLEAN NOT NULL,
            preferences BOOLEAN NOT NULL,
            notice_version VARCHAR(40) NOT NULL,
            recorded_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
            CONSTRAINT pk_cookie_choices PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_cookie_choices_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_cookie_choices_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE
        );
        CREATE INDEX ix_cookie_choices_visitor ON cookie_choices (tenant_id, visitor_id, seq);
        CREATE INDEX ix_cookie_choices_patron ON cookie_choices (tenant_id, patron_id, seq);

        CREATE TABLE objections (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            patron_id UUID NOT NULL,
            scope VARCHAR(100) NOT NULL,
            objected BOOLEAN NOT NULL,
            request_id UUID,
            recorded_by UUID,
            recorded_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
            CONSTRAINT pk_objections PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_objections_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_objections_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_objections_scope_known
                CHECK (scope = 'third_party_disclosure' OR scope ~ '^purpose:[a-z0-9_]{1,80}$')
        );
        CREATE INDEX ix_objections_latest ON objections (tenant_id, patron_id, scope, seq);
        """
    )
    op.execute(
        f"""
        CREATE TABLE disclosures (
            tenant_id UUID NOT NULL,
            id UUID NOT NULL,
            recipient VARCHAR(200) NOT NULL,
            kind VARCHAR(32) NOT NULL,
            purpose VARCHAR(80) NOT NULL,
            basis VARCHAR(32) NOT NULL,
            categories JSONB NOT NULL,
            reference VARCHAR(200),
            subject_count INTEGER NOT NULL,
            refused_count INTEGER NOT NULL,
            notices_queued INTEGER NOT NULL,
            notice_withheld_reason VARCHAR(500),
            disclosed_by UUID NOT NULL,
            disclosed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_disclosures PRIMARY KEY (tenant_id, id),
            CONSTRAINT fk_disclosures_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_disclosures_kind_known CHECK (kind IN ({KINDS})),
            CONSTRAINT ck_disclosures_basis_known CHECK (basis IN ({BASES})),
            CONSTRAINT ck_disclosures_categories_array CHECK (jsonb_typeof(categories) = 'array'),
            CONSTRAINT ck_disclosures_counts
                CHECK (subject_count >= 0 AND refused_count >= 0 AND notices_queued >= 0),
            CONSTRAINT ck_disclosures_withheld_only_legal
                CHECK (notice_withheld_reason IS NULL OR kind = 'legal_request')
        );
        CREATE INDEX ix_disclosures_time ON disclosures (tenant_id, disclosed_at);

        CREATE TABLE disclosure_subjects (
            tenant_id UUID NOT NULL,
            disclosure_id UUID NOT NULL,
            patron_id UUID NOT NULL,
            notice_message_id UUID,
            CONSTRAINT pk_disclosure_subjects PRIMARY KEY (tenant_id, disclosure_id, patron_id),
            CONSTRAINT fk_disclosure_subjects_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_disclosure_subjects_disclosure FOREIGN KEY(tenant_id, disclosure_id)
                REFERENCES disclosures (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT fk_disclosure_subjects_patron FOREIGN KEY(tenant_id, patron_id)
                REFERENCES patrons (tenant_id, id) ON DELETE CASCADE
        );
        CREATE INDEX ix_disclosure_subjects_patron ON disclosure_subjects (tenant_id, patron_id);

        CREATE TABLE disclosure_notice_policies (
            tenant_id UUID NOT NULL,
            kind VARCHAR(32) NOT NULL,
            notify BOOLEAN NOT NULL,
            changed_by UUID NOT NULL,
            changed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_disclosure_notice_policies PRIMARY KEY (tenant_id, kind),
            CONSTRAINT fk_disclosure_notice_policies_tenant_id FOREIGN KEY(tenant_id) REFERENCES tenants (id),
            CONSTRAINT ck_disclosure_notice_policies_kind_known CHECK (kind IN ({KINDS}))
        );
        """
    )
    for table in HISTORIES:
        tenant_table(table, "SELECT, INSERT")
    tenant_table("disclosure_notice_policies", "SELECT, INSERT, UPDATE")
    op.execute(
        """
        CREATE FUNCTION bookwarden_history_unchanged() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the % history is append-only: record a new choice instead of changing one',
                TG_TABLE_NAME;
        END
        $$
        """
    )
    for table in HISTORIES:
        op.execute(
            f"CREATE TRIGGER history_unchanged BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION bookwarden_history_unchanged()"
        )


def downgrade() -> None:
    for table in ["disclosure_notice_policies", "disclosure_subjects", "disclosures", *HISTORIES[:3]]:
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP FUNCTION bookwarden_history_unchanged()")
