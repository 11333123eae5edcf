"""signals: risk_scores.ranking, revenue at risk in the reporting currency, stored and indexed

GET /v1/portfolio sorted every live row by a currency CASE and counted them in the same scan:
25-35 ms of PostgreSQL time on 10,000 accounts, whatever the page size. The converted amount is
now stored with each score, stamped with the digest of the rates it was converted with, so a
page is the first rows of an index. A partial index on the deleted accounts keeps their
anti-join cheap; (band, account_id), with the filtered columns included, serves the count.
Existing rows get no digest: the portfolio ranks them with the CASE until the signals worker
has converted them (a bounded batch every tick).

Revision ID: signals_0008
Revises: signals_0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "signals_0008"
down_revision = "signals_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    money = sa.Numeric(18, 2) if op.get_bind().dialect.name != "sqlite" else sa.BigInteger()
    op.add_column("risk_scores", sa.Column("ranking", money, nullable=False, server_default=sa.text("-1")))
    op.add_column("risk_scores", sa.Column("ranking_rates", sa.String(16), nullable=False, server_default=""))
    op.create_index("ix_risk_scores_ranking", "risk_scores", [sa.text("ranking DESC"), "account_id"])
    op.create_index("ix_risk_scores_ranking_rates", "risk_scores", ["ranking_rates"])
    op.create_index(
        "ix_risk_scores_band_account",
        "risk_scores",
        ["band", "account_id"],
        postgresql_include=["tier", "owner_email", "owner_name"],
    )
    op.create_index(
        "ix_accounts_deleted",
        "accounts",
        ["id"],
        postgresql_where=sa.text("deleted"),
        sqlite_where=sa.text("deleted"),
    )


def downgrade() -> None:
    op.drop_index("ix_accounts_deleted", table_name="accounts")
    op.drop_index("ix_risk_scores_band_account", table_name="risk_scores")
    op.drop_index("ix_risk_scores_ranking_rates", table_name="risk_scores")
    op.drop_index("ix_risk_scores_ranking", table_name="risk_scores")
    with op.batch_alter_table("risk_scores") as batch:
        batch.drop_column("ranking_rates")
        batch.drop_column("ranking")
