"""Alembic, driven from code: one history with a branch per owner (shared, ingest, signals, alerts)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent
OWNERS = ("ingest", "signals", "alerts")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "shared" / "migrations"))
    locations = [str(ROOT / "shared" / "migrations" / "versions")]
    locations += [str(ROOT / "services" / owner / "migrations") for owner in OWNERS]
    config.set_main_option("version_locations", " ".join(locations))
    config.set_main_option("path_separator", "space")
    # '%' must be escaped in ConfigParser values (URL-encoded passwords, options).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, target: str = "heads") -> None:
    """Bring the schema to the latest revision of every branch."""
    command.upgrade(alembic_config(database_url), target)


def downgrade(database_url: str, target: str = "base") -> None:
    command.downgrade(alembic_config(database_url), target)
