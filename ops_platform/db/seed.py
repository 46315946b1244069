"""`ops-platform seed --users N`: a realistic, reproducible synthetic data set.

`seed_database(url, users, seed)` REPLACES the data set: it first empties every table of
the app schema (the contract tables) and the project's own tables derived from them (such
as the leaderboard archive and the analytics outputs; the job locks and the migration
version are kept), then fills
every contract table with rows scaled from `users`. The same seed gives the same rows;
times are relative to the moment of seeding (UTC), with rows on both sides of every
expiry and retention boundary, so each job and asset has work right after seeding.
What each table gets is in `ops_platform.db.seed_data`.

Postgres: the tables are truncated, then loaded by a few parallel connections, each table
in a transaction of its own: truncate, drop its secondary indexes (big tables), COPY
(binary, FREEZE), rebuild the indexes, ANALYZE. Finally the id sequences are moved past
the seeded ids, so the app keeps inserting. SQLite: one transaction of chunked
executemany inserts. Table names are never schema-qualified: a Postgres URL's
search_path picks the schema.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime

from sqlalchemy import Engine, MetaData, Table, inspect, text

from ops_platform.db import schema
from ops_platform.db.bulk_load import Frame, copy_frame_postgres, insert_frame_sqlite
from ops_platform.db.engine import (
    LONG_STATEMENT_TIMEOUT_S,
    is_postgres,
    make_engine,
    state_schema,
    state_table,
)
from ops_platform.db.seed_data import GENERATORS, Context
from ops_platform.log_line import LogLine

# Project tables kept as they are: a running job's lock must survive a reseed.
KEPT_TABLES = frozenset({"job_locks"})
# From this many rows on, a table's indexes are dropped for the COPY and rebuilt after.
REBUILD_INDEXES_FROM_ROWS = 50_000
# Postgres connections loading tables at once (the server does most of the work).
LOAD_WORKERS = 3


def seed_database(
    url: str,
    users: int,
    seed: int = 42,
    progress: LogLine | None = print,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """Empty the app tables and fill every contract table; returns rows written per table."""
    if users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    progress = progress or (lambda message: None)
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    ctx = Context(users=users, seed=seed, now_dt=now)
    engine = make_engine(
        _psycopg_url(url),
        pool_size=LOAD_WORKERS + 1,
        statement_timeout_s=LONG_STATEMENT_TIMEOUT_S,
    )
    try:
        tables = _tables_to_empty(engine)
        progress(f"seeding {users:,} users (seed {seed}) into {len(schema.CONTRACT_TABLES)} tables")
        if is_postgres(engine):
            return _seed_postgres(engine, ctx, tables, progress)
        return _seed_sqlite(engine, ctx, tables, progress)
    finally:
        engine.dispose()


def _psycopg_url(url: str) -> str:
    # COPY needs psycopg 3; a bare postgresql:// URL would pick psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _tables_to_empty(engine: Engine) -> list[str]:
    """SQL names of the tables a reseed empties. Refuses at once, naming them, when tables
    or columns are missing or of a type the data set cannot go into."""
    from ops_platform.db.check import check_tables

    present = set(inspect(engine).get_table_names())
    missing = [name for name in schema.CONTRACT_TABLES if name not in present]
    if missing:
        raise RuntimeError(
            f"the app database lacks tables {', '.join(missing)}: run `ops-platform db upgrade` first"
        )
    unusable = [
        f"{f.where} ({f.problem})"
        for f in check_tables(engine, list(schema.metadata.sorted_tables), indexes=False)
        if f.level == "error"
    ]
    if unusable:
        raise RuntimeError(f"cannot seed these app columns: {'; '.join(unusable)}")
    app_tables = [_quote(t.name) for t in schema.metadata.sorted_tables if t.name in present]
    state_tables = [
        state_table(engine, t.name)
        for t in schema.state_metadata.sorted_tables
        if t.name not in KEPT_TABLES
    ]
    return app_tables + state_tables


def _frames(ctx: Context, engine: Engine) -> Iterator[tuple[Frame, float]]:
    """Every table's frame in dependency order, with the seconds its generator took; the
    project's own tables are named in its schema."""
    for generator in GENERATORS:
        started = time.perf_counter()
        frames = generator(ctx)
        seconds = (time.perf_counter() - started) / max(len(frames), 1)
        for frame in frames:
            if frame.table not in schema.metadata.tables:
                frame.schema = state_schema(engine)
            yield frame, seconds


def _report(progress: LogLine, frame: Frame, generated: float, loaded: float) -> None:
    progress(
        f"  {frame.table:<26} {len(frame):>11,} rows  {generated + loaded:6.2f}s "
        f"(generate {generated:.2f}s, load {loaded:.2f}s)"
    )


def _empty_counts() -> dict[str, int]:
    return {name: 0 for name in schema.CONTRACT_TABLES}


# --- SQLite ---------------------------------------------------------------------------
def _seed_sqlite(
    engine: Engine, ctx: Context, tables: list[str], progress: LogLine
) -> dict[str, int]:
    counts = _empty_counts()
    with engine.begin() as connection:
        for name in tables:
            connection.execute(text(f"DELETE FROM {name}"))
        for frame, generated in _frames(ctx, engine):
            started = time.perf_counter()
            counts[frame.table] = insert_frame_sqlite(
                connection.connection.driver_connection, frame
            )
            _report(progress, frame, generated, time.perf_counter() - started)
    return counts


# --- Postgres -------------------------------------------------------------------------
def _seed_postgres(
    engine: Engine, ctx: Context, tables: list[str], progress: LogLine
) -> dict[str, int]:
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
    counts = _empty_counts()
    # Frames are generated here, in order (later tables refer to earlier ones), while a
    # few connections load the ones already generated.
    with ThreadPoolExecutor(LOAD_WORKERS, thread_name_prefix="seed-load") as pool:
        pending: set[Future] = set()
        for frame, generated in _frames(ctx, engine):
            if len(pending) >= LOAD_WORKERS:  # bounds the frames held in memory
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                _collect(done, counts)
            pending.add(pool.submit(_load_postgres_table, engine, frame, generated, progress))
        _collect(wait(pending).done, counts)
    _reset_sequences(engine, counts)
    return counts


def _collect(done: set[Future], counts: dict[str, int]) -> None:
    for future in done:
        table, rows = future.result()
        counts[table] = rows


def _load_postgres_table(
    engine: Engine, frame: Frame, generated: float, progress: LogLine
) -> tuple[str, int]:
    started = time.perf_counter()
    # COPY's binary format follows the live column types (an app's own tables may use
    # integer for bigint, json for jsonb, …), so they are read from the database.
    live = Table(frame.table, MetaData(), schema=frame.schema, autoload_with=engine)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        connection.execute(text("SET LOCAL maintenance_work_mem = '128MB'"))
        # Truncated in this transaction, so COPY may write the rows already frozen.
        connection.execute(text(f"TRUNCATE {frame.sql_name}"))
        # Building an index once after a big load is much cheaper than updating it per row.
        indexes = (
            _plain_indexes(connection, frame.sql_name)
            if len(frame) >= REBUILD_INDEXES_FROM_ROWS
            else []
        )
        for name, _ in indexes:
            connection.execute(text(f"DROP INDEX {name}"))
        rows = copy_frame_postgres(
            connection.connection.driver_connection, frame, live, freeze=True
        )
        for _, definition in indexes:
            connection.execute(text(definition))
        if rows:
            connection.execute(
                text(f"ANALYZE {frame.sql_name}")
            )  # good plans for the jobs' first runs
    _report(progress, frame, generated, time.perf_counter() - started)
    return frame.table, rows


def _plain_indexes(connection, sql_name: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the table's live indexes that back no constraint,
    whoever made them: the app's own as well as the contract's."""
    return [
        tuple(row)
        for row in connection.execute(
            text(
                "SELECT CAST(i.indexrelid AS regclass)::text, pg_get_indexdef(i.indexrelid) "
                "FROM pg_index i WHERE i.indrelid = CAST(:table AS regclass) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
            ),
            {"table": sql_name},
        )
    ]


def _reset_sequences(engine: Engine, counts: dict[str, int]) -> None:
    """Ids were written explicitly: move each sequence past the highest one."""
    with engine.begin() as connection:
        for table in schema.metadata.sorted_tables:
            column = table.c.get("id")
            if table.name not in counts or column is None or not column.autoincrement:
                continue
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                    f"COALESCE((SELECT max(id) FROM {_quote(table.name)}), 0) + 1, false)"
                ),
                {"table": _quote(table.name)},
            )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
