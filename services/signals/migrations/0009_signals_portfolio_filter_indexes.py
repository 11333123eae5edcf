"""signals: portfolio pages filtered by band, tier or owner read an index, not the table

A page of `/v1/portfolio?band=...` walked the ranking index and skipped the other bands' rows;
`?tier=...` (compared in lower case) had no statistics for the planner and became a scan and
sort of every row (12 ms on 10,000 accounts). (band, ranking DESC, account_id) and
(lower(tier), ranking DESC, account_id) make those pages the first rows of an index, and give
the planner the statistics of lower(tier); lower(owner_email) and lower(owner_name) serve the
owner filter, which matches either in any case. The (band, revenue_at_risk) and
(revenue_at_risk) indexes sorted the portfolio before the ranking column existed; nothing reads
them now, and every score write paid for them.

Revision ID: signals_0009
Revises: signals_0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "signals_0009"
down_revision = "signals_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_risk_scores_band_rar", table_name="risk_scores")
    op.drop_index("ix_risk_scores_rar", table_name="risk_scores")
    op.create_index(
        "ix_risk_scores_band_ranking", "risk_scores", ["band", sa.text("ranking DESC"), "account_id"]
    )
    op.create_index(
        "ix_risk_scores_tier_ranking",
        "risk_scores",
        [sa.text("lower(tier)"), sa.text("ranking DESC"), "account_id"],
    )
    op.create_index("ix_risk_scores_owner_email_lower", "risk_scores", [sa.text("lower(owner_email)")])
    op.create_index("ix_risk_scores_owner_name_lower", "risk_scores", [sa.text("lower(owner_name)")])


def downgrade() -> None:
    op.drop_index("ix_risk_scores_owner_name_lower", table_name="risk_scores")
    op.drop_index("ix_risk_scores_owner_email_lower", table_name="risk_scores")
    op.drop_index("ix_risk_scores_tier_ranking", table_name="risk_scores")
    op.drop_index("ix_risk_scores_band_ranking", table_name="risk_scores")
    op.create_index("ix_risk_scores_rar", "risk_scores", ["revenue_at_risk"])
    op.create_index("ix_risk_scores_band_rar", "risk_scores", ["band", "revenue_at_risk"])
