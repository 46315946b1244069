"""Small pieces the set-based engagement and games assets share: the owners, the
time-decay SQL (the one dialect difference of their rules) and `sync_table`, which writes
only the difference between a fresh result and the table holding the previous one."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from ops_platform.db.engine import is_postgres

OWNERS = ["team:platform"]

# exp() below this underflows on Postgres ("value out of range"); the weight is ~1e-304.
_MIN_EXPONENT = -700.0


def decay_sql(bind: Engine | Connection, column_sql: str) -> str:
    """SQL factor `0.5 ** (age / half_life)` for a timestamp column, where the age is
    `:now_epoch` (seconds) minus the column and `:neg_decay_rate` is `-ln 2 / half_life_s`.

    Postgres reads the epoch with date_part (double precision; EXTRACT returns numeric,
    which is several times slower); SQLite stores text timestamps, read with julianday.
    """
    if is_postgres(bind):
        epoch, floor = f"date_part('epoch', {column_sql})", "GREATEST"
    else:
        epoch, floor = f"((julianday({column_sql}) - 2440587.5) * 86400.0)", "MAX"
    return f"EXP({floor}({_MIN_EXPONENT}, :neg_decay_rate * (:now_epoch - {epoch})))"


def decay_params(now: datetime, half_life: timedelta) -> dict:
    """Bound parameters `decay_sql` needs."""
    if half_life.total_seconds() <= 0:
        raise ValueError(f"half-life must be positive, got {half_life}")
    return {
        "now_epoch": now.timestamp(),
        "neg_decay_rate": -math.log(2) / half_life.total_seconds(),
    }


def create_temp_table(connection: Connection, name: str, definition: str) -> None:
    """`CREATE TEMP TABLE name <definition>` for the caller's transaction, after dropping a
    leftover of an earlier one (SQLite runs DDL outside the transaction, so a rolled-back
    run can leave it behind). Drop it when done."""
    temp_schema = "pg_temp" if is_postgres(connection) else "temp"
    connection.execute(text(f"DROP TABLE IF EXISTS {temp_schema}.{name}"))
    connection.execute(text(f"CREATE TEMP TABLE {name} {definition}"))


@dataclass(frozen=True)
class SyncResult:
    rows: int  # rows the table holds now (the fresh result)
    inserted: int
    updated: int
    deleted: int

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted


def sync_table(
    connection: Connection,
    table: str,
    fresh_sql: str,
    params: dict,
    keys: Sequence[str],
    values: Sequence[str],
    *,
    close_enough: Mapping[str, float] | None = None,
) -> SyncResult:
    """Make `table` (its name in SQL, schema-qualified if need be) hold exactly the rows of
    `fresh_sql` (columns `keys` + `values`, in that order), writing only the difference: rows missing from the result are deleted, rows
    whose values changed are updated, new ones inserted; each written row gets
    `computed_at = :now`. A float column in `close_enough` counts as changed only when it
    moved by at least that much.

    Runs inside the caller's transaction, so readers see the old table until it commits,
    then the new one: never a mix."""
    fresh = "fresh_" + table.rsplit(".", 1)[-1].strip('"')
    columns = ", ".join((*keys, *values))
    same_key = " AND ".join(f"f.{key} = t.{key}" for key in keys)
    distinct = "IS DISTINCT FROM" if is_postgres(connection) else "IS NOT"
    tolerance = {f"close_{column}": float(v) for column, v in (close_enough or {}).items()}
    changed = " OR ".join(
        f"ABS(t.{column} - f.{column}) >= :close_{column}"
        if f"close_{column}" in tolerance
        else f"t.{column} {distinct} f.{column}"
        for column in values
    )
    # The fresh result once, in a temporary table shaped like the target (its column types).
    create_temp_table(connection, fresh, f"AS SELECT {columns} FROM {table} WHERE 1 = 0")
    rows = connection.execute(text(f"INSERT INTO {fresh} ({columns}) {fresh_sql}"), params).rowcount
    connection.execute(text(f"CREATE UNIQUE INDEX ix_{fresh} ON {fresh} ({', '.join(keys)})"))
    if is_postgres(connection):
        connection.execute(text(f"ANALYZE {fresh}"))
    deleted = connection.execute(
        text(
            f"DELETE FROM {table} AS t WHERE NOT EXISTS (SELECT 1 FROM {fresh} AS f WHERE {same_key})"
        )
    ).rowcount
    updated = connection.execute(
        text(f"""
            UPDATE {table} AS t
            SET {", ".join(f"{column} = f.{column}" for column in values)}, computed_at = :now
            FROM {fresh} AS f
            WHERE {same_key} AND ({changed})
        """),
        {"now": params["now"], **tolerance},
    ).rowcount
    inserted = connection.execute(
        text(f"""
            INSERT INTO {table} ({columns}, computed_at)
            SELECT {", ".join(f"f.{column}" for column in (*keys, *values))}, :now
            FROM {fresh} AS f
            WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {same_key})
        """),
        {"now": params["now"]},
    ).rowcount
    connection.execute(text(f"DROP TABLE {fresh}"))
    return SyncResult(rows=rows, inserted=inserted, updated=updated, deleted=deleted)
