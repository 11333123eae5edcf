"""signals: the registry's contract term (`term_months`; NULL = 12 months), an index of outcomes

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


OUTCOME_FILTER = "type IN ('account.churned', 'account.renewed')"  # = models.OUTCOME_FILTER


def upgrade() -> None:
    # A nullable column: SQLite and PostgreSQL both add it in place; existing rows mean 12 months.
    op.add_column("accounts", sa.Column("term_months", sa.Integer(), nullable=True))
    # Partial: only outcome events are in it, so "is this account churned?" reads a few rows.
    op.create_index(
        "ix_signal_events_outcomes",
        "signal_events",
        ["account_id"],
        sqlite_where=sa.text(OUTCOME_FILTER),
        postgresql_where=sa.text(OUTCOME_FILTER),
    )


def downgrade() -> None:
    op.drop_index("ix_signal_events_outcomes", table_name="signal_events")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("term_months")
