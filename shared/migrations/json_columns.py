"""Migration helper: turn TEXT columns holding JSON into JSON columns (and back).

PostgreSQL converts the stored text in place (`USING col::json`). SQLite has no JSON column type:
JSON is TEXT there, so the stored values already are what sa.JSON reads and nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from alembic import op


def to_json(columns: Mapping[str, Sequence[str]]) -> None:
    _alter(columns, sa.Text(), sa.JSON(), "json")


def to_text(columns: Mapping[str, Sequence[str]]) -> None:
    _alter(columns, sa.JSON(), sa.Text(), "text")


def _alter(
    columns: Mapping[str, Sequence[str]], old: sa.types.TypeEngine, new: sa.types.TypeEngine, cast: str
) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, names in columns.items():
        for name in names:
            op.alter_column(table, name, type_=new, existing_type=old, postgresql_using=f"{name}::{cast}")
