"""Opt-out is a gate: a publisher report records the purpose it was released for, and the database
refuses direct marketing as the purpose of a disclosure or a report (core/purposes.py says the same).

Revision ID: 0030
Revises: 0029
"""

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

# The same substrings core/purposes.py refuses: "telemarketing" and "targeted_advertising" too.
NOT_MARKETING = "purpose !~ '(market|advertis|promot)'"


def upgrade() -> None:
    # Releases made before this named no purpose: they were usage statistics, the default since.
    op.execute(
        f"""
        ALTER TABLE publisher_reports
            ADD COLUMN purpose VARCHAR(80) NOT NULL DEFAULT 'usage_statistics',
            ADD CONSTRAINT ck_publisher_reports_purpose_is_a_name CHECK (purpose ~ '^[a-z0-9_]{{1,80}}$'),
            ADD CONSTRAINT ck_publisher_reports_not_marketing CHECK ({NOT_MARKETING});
        ALTER TABLE publisher_reports ALTER COLUMN purpose DROP DEFAULT;
        """
    )
    # NOT VALID: a disclosure recorded before is history and stays as it was; every new one is checked.
    op.execute(f"ALTER TABLE disclosures ADD CONSTRAINT ck_disclosures_not_marketing CHECK ({NOT_MARKETING}) NOT VALID")


def downgrade() -> None:
    op.execute("ALTER TABLE disclosures DROP CONSTRAINT ck_disclosures_not_marketing")
    op.execute("ALTER TABLE publisher_reports DROP COLUMN purpose")
