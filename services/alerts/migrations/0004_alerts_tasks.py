"""alerts: the tasks of an alert (its playbook's steps, with due dates)

Revision ID: alerts_0004
Revises: alerts_0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "alerts_0004"
down_revision = "alerts_0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_tasks",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("alert_id", BigId, nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("link", sa.String(1000), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("done_by", sa.String(320), nullable=True),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.Column("escalated_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_tasks_alert_id_alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_tasks"),
        sa.UniqueConstraint(
            "alert_id", "trigger", "position", name="uq_alert_tasks_alert_id_trigger_position"
        ),
    )
    op.create_index("ix_alert_tasks_alert_id", "alert_tasks", ["alert_id"])
    op.create_index("ix_alert_tasks_state_due", "alert_tasks", ["state", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_tasks_state_due", table_name="alert_tasks")
    op.drop_index("ix_alert_tasks_alert_id", table_name="alert_tasks")
    op.drop_table("alert_tasks")
