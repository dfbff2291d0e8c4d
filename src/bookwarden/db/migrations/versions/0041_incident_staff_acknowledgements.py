"""Breach scope traced to every subject, and the institution's acknowledgement of its notice: the staff accounts
a breach affected (a tenant table, deleted with the account), the count of people it affected whose records
were erased before it was found (a number, never an id), and when (and by whom) the institution acknowledged
the notice, with the reminders the escalation job sent until then.

Numbered 0041 with down_revision "0039" as written on its branch; the lead re-chains it after the migrations
merged before it.

Revision ID: 0041
Revises: 0039
"""

from alembic import op

from bookwarden.db.migrations.rls import tenant_table

revision = "0041"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE incident_staff (
            tenant_id UUID NOT NULL,
            incident_id UUID NOT NULL,
            account_id UUID NOT NULL,
            found_by VARCHAR(16) NOT NULL,
            added_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
            CONSTRAINT pk_incident_staff PRIMARY KEY (tenant_id, incident_id, account_id),
            CONSTRAINT fk_incident_staff_tenant_id FOREIGN KEY (tenant_id) REFERENCES tenants (id),
            CONSTRAINT fk_incident_staff_account FOREIGN KEY (tenant_id, account_id)
                REFERENCES accounts (tenant_id, id) ON DELETE CASCADE,
            CONSTRAINT ck_incident_staff_found_by_known CHECK (found_by IN ('listed', 'audit_trail'))
        );
        CREATE INDEX ix_incident_staff_account ON incident_staff (tenant_id, account_id);

        ALTER TABLE incident_impacts
            ADD COLUMN erased_subjects INTEGER DEFAULT 0 NOT NULL,
            ADD COLUMN acknowledged_at TIMESTAMP WITH TIME ZONE,
            ADD COLUMN acknowledged_by UUID,
            ADD COLUMN reminders INTEGER DEFAULT 0 NOT NULL;
        """
    )
    # Staff rows go with their account (a deleted account leaves none; the foreign key cascades).
    tenant_table("incident_staff", "SELECT, INSERT, UPDATE, DELETE")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE incident_impacts DROP COLUMN reminders, DROP COLUMN acknowledged_by, "
        "DROP COLUMN acknowledged_at, DROP COLUMN erased_subjects"
    )
    op.execute("DROP TABLE incident_staff")
