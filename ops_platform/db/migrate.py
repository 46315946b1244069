"""`ops-platform db upgrade [--sql]`: create or migrate the schema with Alembic.

Revisions live in `migrations/versions` (one head). The version table lives in the project's
own namespace, never among the app's tables. The first revision creates the contract tables
that are missing (an empty database: the demo and tests) and leaves the app's existing
tables untouched; later revisions create the tables the project owns.
"""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from ops_platform.db.engine import (
    LONG_STATEMENT_TIMEOUT_S,
    is_postgres,
    make_engine,
    state_schema,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first upgrade)."""
    schema = state_schema(engine)
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE, schema=schema):
            return None
        context = MigrationContext.configure(
            connection, opts={"version_table_schema": schema, "version_table": VERSION_TABLE}
        )
        return context.get_current_revision()


def _engine(url_or_engine: str | Engine) -> tuple[Engine, bool]:
    if isinstance(url_or_engine, str):
        # A migration may index or rewrite millions of rows in one statement.
        return make_engine(url_or_engine, statement_timeout_s=LONG_STATEMENT_TIMEOUT_S), True
    return url_or_engine, False


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> list[str]:
    """Upgrade the schema to `revision`; returns the app tables present afterwards."""
    engine, owned = _engine(url_or_engine)
    try:
        config = alembic_config()
        config.attributes["state_schema"] = state_schema(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        return sorted(inspect(engine).get_table_names())
    finally:
        if owned:
            engine.dispose()


def upgrade_sql(url_or_engine: str | Engine, revision: str = "head") -> str:
    """The DDL `upgrade` would run on this database, without running it.

    The live database is only read: which revision it is at and which app tables exist, so
    the script creates exactly what is missing."""
    engine, owned = _engine(url_or_engine)
    try:
        current = current_revision(engine)
        target = head_revision() if revision == "head" else revision
        if current == target:
            return f"-- already at revision {current}: nothing to run\n"
        buffer = io.StringIO()
        config = alembic_config()
        config.output_buffer = buffer
        config.attributes.update(
            state_schema=state_schema(engine),
            dialect_name=engine.dialect.name,
            app_tables=set(inspect(engine).get_table_names()),
            create_schema=is_postgres(engine),
        )
        command.upgrade(config, f"{current}:{revision}" if current else revision, sql=True)
        return buffer.getvalue()
    finally:
        if owned:
            engine.dispose()
