"""A per-address budget for the audit events of anonymous refusals (401s, 403s... of callers with no
credential): a flood from one address must not grow the permanent trail without bound.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE rate_budgets DROP CONSTRAINT ck_rate_budgets_purpose_known")
    op.execute(
        "ALTER TABLE rate_budgets ADD CONSTRAINT ck_rate_budgets_purpose_known "
        "CHECK (purpose IN ('cookie_choice', 'anonymous_events'))"
    )


def downgrade() -> None:
    op.execute("DELETE FROM rate_budgets WHERE purpose = 'anonymous_events'")
    op.execute("ALTER TABLE rate_budgets DROP CONSTRAINT ck_rate_budgets_purpose_known")
    op.execute(
        "ALTER TABLE rate_budgets ADD CONSTRAINT ck_rate_budgets_purpose_known CHECK (purpose IN ('cookie_choice'))"
    )
