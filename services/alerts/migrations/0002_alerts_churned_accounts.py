"""alerts: churned accounts (no alert opens for them again unless signals reactivates them)

Revision ID: alerts_0002
Revises: alerts_0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "alerts_0002"
down_revision = "alerts_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_churned_accounts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("churned_at", UTCDateTime(), nullable=False),
        sa.Column("reactivated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", name="pk_alert_churned_accounts"),
    )


def downgrade() -> None:
    op.drop_table("alert_churned_accounts")
