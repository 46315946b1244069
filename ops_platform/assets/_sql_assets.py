"""Small pieces the set-based engagement and games assets share: their `dg.asset`
arguments (`sql_asset`), the asset that runs a rule and reports what they all report
(`rule_asset`), the time-decay SQL (the one dialect difference of their rules) and
`sync_table`, which writes only the difference between a fresh result and the table holding
the previous one."""

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import Connection, Engine, text

from ops_platform.assets._decorators import catalog_asset
from ops_platform.assets._malformed import asset_bad_rows
from ops_platform.assets.app_tables import app_table_keys
from ops_platform.db.engine import is_postgres, utcnow
from ops_platform.resources.database import Database
from ops_platform.retries import transient_retries

OWNERS = ["team:platform"]


def sql_asset(name: str, group_name: str, table: str, reads: Sequence[str], **kwargs):
    """A set-based SQL asset written to `table` from the app tables `reads` (its lineage)."""
    return catalog_asset(
        name,
        group_name=group_name,
        owners=OWNERS,
        kinds={"sql", "postgres"},
        deps=app_table_keys(*reads),
        metadata={"dagster/table_name": table},
        **kwargs,
    )


class RuleConfig(dg.Config):
    """The configuration of a rule asset: it gives the rule to run."""

    def rule(self) -> Callable[[Connection, datetime], Any]:
        """The rule with this configuration, as a function of a connection and a time."""
        raise NotImplementedError


@dataclass(frozen=True)
class RuleSummary:
    """What a rule asset reports beyond what they all do."""

    examined: int
    written: int
    figures: dict
    preview: str  # Markdown
    message: str  # the log line, without the duration


def rule_asset(
    name: str,
    group_name: str,
    table: str,
    reads: Sequence[str],
    config_class: type[RuleConfig],
    summary: Callable[[Connection, Any, Any, datetime], RuleSummary],
    description: str,
) -> dg.AssetsDefinition:
    """A set-based SQL asset: `config.rule()` run in one transaction (transient faults
    retried), then `summary(connection, result, config, now)` read from the table it wrote."""

    @sql_asset(name, group_name, table, reads, description=description)
    def _asset(
        context: dg.AssetExecutionContext, config: config_class, database: Database
    ) -> dg.MaterializeResult:
        now, started = utcnow(), time.perf_counter()
        with transient_retries(context), database.begin() as connection:
            result = config.rule()(connection, now)
        seconds = time.perf_counter() - started
        with database.connect() as connection:
            done = summary(connection, result, config, now)
        context.log.info(f"{done.message}, in {seconds:.2f}s")
        return dg.MaterializeResult(metadata=_rule_metadata(context, database, done, seconds, now))

    return _asset


def _rule_metadata(
    context: dg.AssetExecutionContext,
    database: Database,
    done: RuleSummary,
    seconds: float,
    now: datetime,
) -> dict:
    """What every rule asset reports: rows examined and written, its own figures, the
    malformed rows of the app tables it reads (skipped), the duration, the time, a preview."""
    return {
        "row_count": done.examined,
        "rows_examined": done.examined,
        "rows_written": done.written,
        **done.figures,
        **asset_bad_rows(context, database),
        "duration_s": round(seconds, 3),
        "computed_at": now.isoformat(),
        "preview": dg.MetadataValue.md(done.preview),
    }


def latest_metadata(context: dg.AssetCheckExecutionContext, asset: dg.AssetsDefinition) -> dict:
    """Metadata values of the asset's latest materialization ({} if none): what a check of
    the asset compares the table with."""
    event = context.instance.get_latest_materialization_event(asset.key)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


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
