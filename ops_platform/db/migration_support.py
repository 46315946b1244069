"""Helpers the Alembic revisions share: the project's namespace and what already exists.

A revision creating a project-owned table passes `schema=state_schema()`; app tables are
only ever created when missing (`app_tables_present`), never altered.
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import Table, inspect
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
