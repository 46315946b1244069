"""Column shapes that `schema.py` and the Alembic revisions share.

The revisions build their tables from these helpers, so what a helper returns is part of
every revision that uses it: add a new helper rather than change an existing one.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, text
from sqlalchemy.types import TypeEngine

# BIGINT ids on Postgres; SQLite needs INTEGER PRIMARY KEY for its rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")
Ts = DateTime(timezone=True)


def serial_id() -> Column:
    """The table's own generated `id`."""
    return Column("id", Id, primary_key=True, autoincrement=True)


def row_key(name: str) -> Column:
    """A primary-key column holding another row's id (never generated here)."""
    return Column(name, Id, primary_key=True, autoincrement=False)


def created_at() -> Column:
    return Column("created_at", Ts, nullable=False, server_default=text("CURRENT_TIMESTAMP"))


def required(**types: TypeEngine | type[TypeEngine]) -> list[Column]:
    """NOT NULL columns without a default, in the order given."""
    return [Column(name, type_, nullable=False) for name, type_ in types.items()]


def optional(**types: TypeEngine | type[TypeEngine]) -> list[Column]:
    """Nullable columns, in the order given."""
    return [Column(name, type_) for name, type_ in types.items()]


def with_default(name: str, type_: TypeEngine | type[TypeEngine], sql: str) -> Column:
    """A NOT NULL column the database fills with `sql` when a row leaves it out."""
    return Column(name, type_, nullable=False, server_default=text(sql))
