"""signals: the registry's contract term (`term_months`; NULL = 12 months)

Revision ID: signals_0003
Revises: signals_0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "signals_0003"
down_revision = "signals_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: SQLite and PostgreSQL both add it in place; existing rows mean 12 months.
    op.add_column("accounts", sa.Column("term_months", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("term_months")
