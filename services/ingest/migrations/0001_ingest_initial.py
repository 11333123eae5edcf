"""ingest: event store, dead letters, parked events, account read copy

Revision ID: ingest_0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "ingest_0001"
down_revision = None
branch_labels = ("ingest",)
depends_on = "shared_0001"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("origin_topic", sa.String(255), nullable=False),
        sa.Column("origin_partition", sa.Integer(), nullable=False),
        sa.Column("origin_offset", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
    )
    op.create_index("ix_events_account_time", "events", ["account_id", "event_time"])
    op.create_index("ix_events_unpublished", "events", ["published_at", "id"])
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_topic_partition_offset"),
    )
    op.create_table(
        "parked_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("account_ref", sa.String(200), nullable=False),
        sa.Column("origin_topic", sa.String(255), nullable=False),
        sa.Column("origin_partition", sa.Integer(), nullable=False),
        sa.Column("origin_offset", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("parked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_parked_events"),
        sa.UniqueConstraint("source", "event_id", name="uq_parked_events_source_event_id"),
    )
    op.create_index("ix_parked_events_account_ref", "parked_events", ["account_ref"])
    op.create_table(
        "ingest_accounts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_ingest_accounts"),
    )
    op.create_table(
        "account_aliases",
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("system", "external_id", name="pk_account_aliases"),
    )
    op.create_index("ix_account_aliases_account_id", "account_aliases", ["account_id"])


def downgrade() -> None:
    op.drop_table("account_aliases")
    op.drop_table("ingest_accounts")
    op.drop_index("ix_parked_events_account_ref", "parked_events")
    op.drop_table("parked_events")
    op.drop_table("dead_letters")
    op.drop_index("ix_events_unpublished", "events")
    op.drop_index("ix_events_account_time", "events")
    op.drop_table("events")
