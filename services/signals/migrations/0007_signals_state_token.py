"""signals: risk_scores.state_token, which version of an account's state the score was made from

The signals worker keeps the state of the accounts it scores in memory (handler.StateCache). Every
write of an account's buckets and entities sets a new token here, in the same transaction; a
cached copy is used only while its token equals the stored one, so a write by another replica,
by `signals rebuild` or by a transaction that rolled back makes the copy be read again.

Revision ID: signals_0007
Revises: signals_0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "signals_0007"
down_revision = "signals_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: existing rows have no token, so the first batch reads their state from the tables.
    op.add_column("risk_scores", sa.Column("state_token", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_scores") as batch:
        batch.drop_column("state_token")
