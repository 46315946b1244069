"""Helpers the Alembic revisions share: the project's namespace and what already exists.

A revision creating a project-owned table uses `create_state_table`; app tables are
only ever created when missing (`app_tables_present`), never altered.
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import Column, Table, inspect
from sqlalchemy.schema import CreateIndex, CreateTable


def state_schema() -> str:
    """The project's namespace in this migration (a Postgres schema or attached SQLite file)."""
    return context.config.attributes["state_schema"]


def app_tables_present() -> set[str]:
    """Tables of the app's schema; offline (`--sql`) as read from the live database."""
    if context.is_offline_mode():
        return set(context.config.attributes["app_tables"])
    return set(inspect(op.get_bind()).get_table_names())


def create_table_with_indexes(table: Table) -> None:
    op.execute(CreateTable(table))
    for index in sorted(table.indexes, key=lambda index: index.name):
        op.execute(CreateIndex(index))


def create_state_table(name: str, *columns: Column, indexes: dict[str, str] | None = None) -> None:
    """Create a project-owned table, then its one-column indexes (`{index name: column}`)."""
    schema = state_schema()
    op.create_table(name, *columns, schema=schema)
    for index, column in (indexes or {}).items():
        op.create_index(index, name, [column], schema=schema)


def drop_state_tables(*names: str) -> None:
    """Drop project-owned tables (with their indexes), the last created first."""
    for name in reversed(names):
        op.drop_table(name, schema=state_schema())
