"""signals: account plans (objectives, expansion opportunities, relationship notes, QBR cadence)

Revision ID: signals_0005
Revises: signals_0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "signals_0005"
down_revision = "signals_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_plans",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_account_plans"),
    )


def downgrade() -> None:
    op.drop_table("account_plans")
