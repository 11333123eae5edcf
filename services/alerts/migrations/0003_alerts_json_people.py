"""alerts: the people of an account as a JSON column

Revision ID: alerts_0003
Revises: alerts_0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from shared.migrations.json_columns import to_json, to_text

revision = "alerts_0003"
down_revision = "alerts_0002"
branch_labels = None
depends_on = None

COLUMNS = {"alert_accounts": ("people",)}


def upgrade() -> None:
    to_json(COLUMNS)


def downgrade() -> None:
    to_text(COLUMNS)
