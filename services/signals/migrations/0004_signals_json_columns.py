"""signals: JSON columns for drivers, changes, features (risk), counts (buckets) and state (entities)

Revision ID: signals_0004
Revises: signals_0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from shared.migrations.json_columns import to_json, to_text

revision = "signals_0004"
down_revision = "signals_0003"
branch_labels = None
depends_on = None

COLUMNS = {
    "risk_scores": ("drivers", "changes", "features"),
    "risk_history": ("drivers", "changes", "features"),
    "signal_buckets": ("counts",),
    "signal_entities": ("state",),
}


def upgrade() -> None:
    to_json(COLUMNS)


def downgrade() -> None:
    to_text(COLUMNS)
