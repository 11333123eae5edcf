"""signals: account registry, processed events, daily buckets, entities, risk scores + history

Revision ID: signals_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "signals_0001"
down_revision = None
branch_labels = ("signals",)
depends_on = "shared_0001"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("arr", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tier", sa.String(50), nullable=False),
        sa.Column("segment", sa.String(50), nullable=True),
        sa.Column("renewal_date", sa.Date(), nullable=True),
        sa.Column("owner_email", sa.String(320), nullable=True),
        sa.Column("owner_name", sa.String(200), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
    )
    op.create_index("ix_accounts_unpublished", "accounts", ["published_at", "updated_at"])
    op.create_table(
        "signal_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signal_events"),
        sa.UniqueConstraint("source", "event_id", name="uq_signal_events_source_event_id"),
    )
    op.create_index("ix_signal_events_account_time", "signal_events", ["account_id", "event_time"])
    op.create_table(
        "signal_buckets",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", name="pk_signal_buckets"),
    )
    op.create_table(
        "signal_entities",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.Column("event_key", sa.String(720), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "kind", "entity_id", name="pk_signal_entities"),
    )
    op.create_index(
        "ix_signal_entities_account_active", "signal_entities", ["account_id", "active", "event_time"]
    )
    _risk_tables()


def _risk_tables() -> None:
    op.create_table(
        "risk_scores",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.Column("drivers", sa.Text(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("published_score", sa.Float(), nullable=True),
        sa.Column("published_band", sa.String(8), nullable=True),
        sa.Column("account_version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("arr", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tier", sa.String(50), nullable=False),
        sa.Column("owner_email", sa.String(320), nullable=True),
        sa.Column("owner_name", sa.String(200), nullable=True),
        sa.Column("revenue_at_risk", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_risk_scores"),
    )
    op.create_index("ix_risk_scores_band_rar", "risk_scores", ["band", "revenue_at_risk"])
    op.create_index("ix_risk_scores_rar", "risk_scores", ["revenue_at_risk"])
    op.create_index("ix_risk_scores_owner", "risk_scores", ["owner_email"])
    op.create_index("ix_risk_scores_as_of", "risk_scores", ["as_of"])
    op.create_table(
        "risk_history",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("previous_score", sa.Float(), nullable=True),
        sa.Column("previous_band", sa.String(8), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.Column("drivers", sa.Text(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("publish", sa.Boolean(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_risk_history"),
    )
    op.create_index("ix_risk_history_account", "risk_history", ["account_id", "id"])
    op.create_index("ix_risk_history_outbox", "risk_history", ["publish", "published_at"])


def downgrade() -> None:
    for table in (
        "risk_history",
        "risk_scores",
        "signal_entities",
        "signal_buckets",
        "signal_events",
        "accounts",
    ):
        op.drop_table(table)
