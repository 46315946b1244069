"""`ops-platform db upgrade`: create or migrate the app database with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

from ops_platform.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> list[str]:
    """Upgrade the schema to `revision`; returns the tables present afterwards."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    tables = sorted(inspect(engine).get_table_names())
    if isinstance(url_or_engine, str):
        engine.dispose()
    return tables
