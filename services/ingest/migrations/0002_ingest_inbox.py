"""ingest: the HTTP inbox, and where each stored event went on kamwatch.events

Revision ID: ingest_0002
Revises: ingest_0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "ingest_0002"
down_revision = "ingest_0001"
branch_labels = None
depends_on = "shared_0002"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ingest_inbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.String(200), nullable=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("relayed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_inbox"),
    )
    op.create_index("ix_ingest_inbox_relayed", "ingest_inbox", ["relayed_at", "id"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("kafka_partition", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("kafka_offset", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("applied_at", UTCDateTime(), nullable=True))
    op.create_index("ix_events_unapplied", "events", ["applied_at", "kafka_partition", "kafka_offset"])
    # Events published before this revision are taken as applied: otherwise the first broker
    # epoch check would publish the whole history again.
    op.execute("UPDATE events SET applied_at = published_at WHERE published_at IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_events_unapplied", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("applied_at")
        batch.drop_column("kafka_offset")
        batch.drop_column("kafka_partition")
    op.drop_index("ix_ingest_inbox_relayed", table_name="ingest_inbox")
    op.drop_table("ingest_inbox")
