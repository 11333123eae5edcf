"""alerts: account read copy, score history, alerts, transitions, delivery outbox and attempts

Revision ID: alerts_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "alerts_0001"
down_revision = None
branch_labels = ("alerts",)
depends_on = "shared_0001"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_accounts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("arr", sa.Numeric(18, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tier", sa.String(50), nullable=False),
        sa.Column("segment", sa.String(50), nullable=True),
        sa.Column("people", sa.Text(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_alert_accounts"),
    )
    op.create_table(
        "alert_risk_scores",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_risk_scores"),
        sa.UniqueConstraint("account_id", "as_of", name="uq_alert_risk_scores_account_id_as_of"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("triggers", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("escalation", sa.String(64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("risk", sa.Text(), nullable=False),
        sa.Column("owner_email", sa.String(320), nullable=True),
        sa.Column("owner_name", sa.String(200), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("level_since", UTCDateTime(), nullable=True),
        sa.Column("last_notified_at", UTCDateTime(), nullable=True),
        sa.Column("next_escalation_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(320), nullable=True),
        sa.Column("snoozed_until", UTCDateTime(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("inhibited_by", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_account_state", "alerts", ["account_id", "state"])
    op.create_index("ix_alerts_next_escalation_at", "alerts", ["next_escalation_at"])
    op.create_table(
        "alert_transitions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("alert_id", BigId, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_transitions_alert_id_alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_transitions"),
    )
    op.create_index("ix_alert_transitions_alert_id", "alert_transitions", ["alert_id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("alert_id", BigId, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(500), nullable=False),
        sa.Column("recipient_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(300), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_deliveries_alert_id_alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        sa.UniqueConstraint(
            "alert_id",
            "step",
            "channel",
            "recipient",
            name="uq_alert_deliveries_alert_id_step_channel_recipient",
        ),
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])
    op.create_index("ix_alert_deliveries_state_next", "alert_deliveries", ["state", "next_attempt_at"])
    op.create_table(
        "alert_delivery_attempts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("delivery_id", BigId, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["alert_deliveries.id"],
            name="fk_alert_delivery_attempts_delivery_id_alert_deliveries",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alert_delivery_attempts"),
    )
    op.create_index("ix_alert_delivery_attempts_delivery_id", "alert_delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_alert_delivery_attempts_delivery_id", "alert_delivery_attempts")
    op.drop_table("alert_delivery_attempts")
    op.drop_index("ix_alert_deliveries_state_next", "alert_deliveries")
    op.drop_index("ix_alert_deliveries_alert_id", "alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_transitions_alert_id", "alert_transitions")
    op.drop_table("alert_transitions")
    op.drop_index("ix_alerts_next_escalation_at", "alerts")
    op.drop_index("ix_alerts_account_state", "alerts")
    op.drop_table("alerts")
    op.drop_table("alert_risk_scores")
    op.drop_table("alert_accounts")
