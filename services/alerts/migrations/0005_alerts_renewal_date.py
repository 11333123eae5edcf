"""alerts: the renewal date in the account read copy (messages say it, with the days to go)

Revision ID: alerts_0005
Revises: alerts_0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "alerts_0005"
down_revision = "alerts_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_accounts") as batch:
        batch.add_column(sa.Column("renewal_date", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_accounts") as batch:
        batch.drop_column("renewal_date")
