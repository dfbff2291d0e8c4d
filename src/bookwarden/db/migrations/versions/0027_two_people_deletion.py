"""Two people for destructive and bulk acts on personal data: a patron's deletion by staff waits for a second
person and a grace period; one patron's access package outside a data-subject request is built once, under an
approval.

patrons.deletion_due_at: set while a deletion by staff is pending (the patron hidden and frozen, the subject
key kept); the hourly job carries it out, or lets it lapse, at that time. patrons.deletion_approval_id: the
approval request it waits on. subject_export_packages.approval_id: the approval a package was built under,
unique per institution (one build per approval).

Revision ID: 0027
Revises: 0026
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE patrons ADD COLUMN deletion_due_at TIMESTAMP WITH TIME ZONE, ADD COLUMN deletion_approval_id UUID"
    )
    # The hourly job looks only at the few deletions pending.
    op.execute(
        "CREATE INDEX ix_patrons_deletion_due ON patrons (tenant_id, deletion_due_at) WHERE deletion_due_at IS NOT NULL"
    )
    op.execute("ALTER TABLE subject_export_packages ADD COLUMN approval_id UUID")
    op.execute(
        "CREATE UNIQUE INDEX uq_subject_export_packages_approval ON subject_export_packages (tenant_id, approval_id) "
        "WHERE approval_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX uq_subject_export_packages_approval")
    op.execute("ALTER TABLE subject_export_packages DROP COLUMN approval_id")
    op.execute("DROP INDEX ix_patrons_deletion_due")
    op.execute("ALTER TABLE patrons DROP COLUMN deletion_approval_id, DROP COLUMN deletion_due_at")
