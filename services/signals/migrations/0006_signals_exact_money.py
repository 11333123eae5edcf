"""signals: exact money (ARR and revenue at risk) and the registry's manager columns

ARR and revenue at risk were FLOAT: a large ARR with cents did not round-trip. They become
NUMERIC(18,2) on PostgreSQL and integer minor units (cents) on SQLite, whose NUMERIC is a double
(`shared.db.Money`). `accounts.manager_email` / `manager_name` copy the registry record's manager
so the registry and the portfolio can filter on it (issue 14).

Revision ID: signals_0006
Revises: signals_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "signals_0006"
down_revision = "signals_0005"
branch_labels = None
depends_on = None

MONEY = {"accounts": ("arr",), "risk_scores": ("arr", "revenue_at_risk")}


def upgrade() -> None:
    op.add_column("accounts", sa.Column("manager_email", sa.String(320), nullable=True))
    op.add_column("accounts", sa.Column("manager_name", sa.String(200), nullable=True))
    _backfill_managers()
    if op.get_bind().dialect.name == "postgresql":
        for table, names in MONEY.items():
            for name in names:
                op.alter_column(
                    table,
                    name,
                    type_=sa.Numeric(18, 2),
                    existing_type=sa.Float(),
                    existing_nullable=False,
                    postgresql_using=f"round({name}::numeric, 2)",
                )
        return
    for table, names in MONEY.items():
        rows = sa.table(table, *(sa.column(n) for n in names))
        op.execute(rows.update().values({n: sa.func.round(rows.c[n] * 100) for n in names}))
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.alter_column(
                    name, type_=sa.BigInteger(), existing_type=sa.Float(), existing_nullable=False
                )


def _backfill_managers() -> None:
    bind = op.get_bind()
    accounts = sa.table(
        "accounts",
        sa.column("id", sa.String()),
        sa.column("record", sa.Text()),
        sa.column("manager_email", sa.String()),
        sa.column("manager_name", sa.String()),
    )
    for account_id, record in bind.execute(sa.select(accounts.c.id, accounts.c.record)).all():
        try:
            manager = json.loads(record or "{}").get("manager") or {}
        except ValueError:
            continue
        if manager:
            bind.execute(
                accounts.update()
                .where(accounts.c.id == account_id)
                .values(manager_email=manager.get("email"), manager_name=manager.get("name"))
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, names in MONEY.items():
            for name in names:
                op.alter_column(table, name, type_=sa.Float(), existing_type=sa.Numeric(18, 2))
    else:
        for table, names in MONEY.items():
            with op.batch_alter_table(table) as batch:
                for name in names:
                    batch.alter_column(name, type_=sa.Float(), existing_type=sa.BigInteger())
            rows = sa.table(table, *(sa.column(n) for n in names))
            op.execute(rows.update().values({n: rows.c[n] / 100.0 for n in names}))
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("manager_name")
        batch.drop_column("manager_email")
