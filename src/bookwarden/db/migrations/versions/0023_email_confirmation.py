"""A self-registration's address counts only once its owner confirms it; one form, several patrons sharing its address.

patrons.email_unconfirmed_until: set while the address is only what someone typed into self-registration
(nothing is mailed to it, the request form does not match it); the registration lapses at that time.
privacy_requests.shared_address_group: the requests one form made, one per patron, when its address is on
file for several patrons; the officer decides which patron(s) asked.

Both tables are tenant tables already (tenant_id in their keys, row-level security forced): the new
columns fall under their policies and grants. The indexes lead with tenant_id, like every other.

Revision ID: 0023
Revises: 0022
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE patrons ADD COLUMN email_unconfirmed_until TIMESTAMP WITH TIME ZONE")
    # The hourly lapse job looks only at the few registrations still waiting.
    op.execute(
        "CREATE INDEX ix_patrons_email_unconfirmed ON patrons (tenant_id, email_unconfirmed_until) "
        "WHERE email_unconfirmed_until IS NOT NULL"
    )
    op.execute("ALTER TABLE privacy_requests ADD COLUMN shared_address_group UUID")
    op.execute(
        "CREATE INDEX ix_privacy_requests_shared_address ON privacy_requests (tenant_id, shared_address_group) "
        "WHERE shared_address_group IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_privacy_requests_shared_address")
    op.execute("ALTER TABLE privacy_requests DROP COLUMN shared_address_group")
    op.execute("DROP INDEX ix_patrons_email_unconfirmed")
    op.execute("ALTER TABLE patrons DROP COLUMN email_unconfirmed_until")
