"""alerts: the message an alert episode owes (an update, or an escalation after a severity rise)

Revision ID: alerts_0006
Revises: alerts_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "alerts_0006"
down_revision = "alerts_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("pending", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("pending")
