"""`ops-platform seed --users N`: a realistic, reproducible synthetic data set.

`seed_database(url, users, seed)` REPLACES the data set: it first empties every table of
the app schema (the contract tables and the tables the jobs derive from them, such as the
leaderboard archive and the analytics outputs; only the job-lock table is kept), then fills
every contract table with rows scaled from `users`. The same seed gives the same rows;
times are relative to the moment of seeding (UTC), with rows on both sides of every
expiry and retention boundary, so each job and asset has work right after seeding.
What each table gets is in `ops_platform.db.seed_data`.

Postgres: one transaction; the tables are truncated, each table's secondary indexes are
dropped, its rows are streamed with COPY (FREEZE) and the indexes rebuilt, then the id
sequences are moved past the seeded ids (so the app keeps inserting) and the tables
analysed. SQLite: one transaction of chunked executemany inserts.
Table names are never schema-qualified: a Postgres URL's search_path picks the schema.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Connection, inspect, text

from ops_platform.db import schema
from ops_platform.db.bulk_load import Frame, copy_frame_postgres, insert_frame_sqlite
from ops_platform.db.engine import is_postgres, make_engine
from ops_platform.db.seed_data import GENERATORS, Context

# Tables kept as they are: a running job's lock must survive a reseed.
KEPT_TABLES = frozenset({"ops_job_locks"})
# From this many rows on, a table's indexes are dropped for the COPY and rebuilt after.
REBUILD_INDEXES_FROM_ROWS = 50_000


def seed_database(
    url: str,
    users: int,
    seed: int = 42,
    progress: Callable[[str], None] | None = print,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """Empty the app tables and fill every contract table; returns rows written per table."""
    if users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    progress = progress or (lambda message: None)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    engine = make_engine(_psycopg_url(url))
    try:
        present = set(inspect(engine).get_table_names())
        missing = [name for name in schema.CONTRACT_TABLES if name not in present]
        if missing:
            raise RuntimeError(
                f"the app database lacks tables {', '.join(missing)}: run `ops-platform db upgrade` first"
            )
        emptied = [t.name for t in schema.metadata.sorted_tables if t.name in present and t.name not in KEPT_TABLES]
        loader = _PostgresLoader if is_postgres(engine) else _SqliteLoader
        with engine.begin() as connection:
            counts = loader(connection, progress).run(emptied, Context(users=users, seed=seed, now_dt=now))
        if is_postgres(engine):
            _analyze(engine, counts)
    finally:
        engine.dispose()
    return counts


def _psycopg_url(url: str) -> str:
    # COPY needs psycopg 3; a bare postgresql:// URL would pick psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


class _Loader:
    def __init__(self, connection: Connection, progress: Callable[[str], None]):
        self.connection = connection
        self.progress = progress

    def run(self, emptied: list[str], ctx: Context) -> dict[str, int]:
        started = time.perf_counter()
        self.empty(emptied)
        self.progress(f"emptied {len(emptied)} tables ({time.perf_counter() - started:.2f}s); "
                      f"seeding {ctx.users:,} users, seed {ctx.seed}")
        counts = {name: 0 for name in schema.CONTRACT_TABLES}
        for generator in GENERATORS:
            started = time.perf_counter()
            frames = generator(ctx)
            generated = time.perf_counter()
            for frame in frames:
                counts[frame.table] = self.load(frame)
            seconds = time.perf_counter() - started
            for frame in frames:
                self.progress(f"  {frame.table:<26} {counts[frame.table]:>11,} rows")
            self.progress(f"    {generator.__name__}: {seconds:.2f}s (generate {generated - started:.2f}s)")
        self.finish(counts)
        return counts

    def empty(self, tables: list[str]) -> None:
        raise NotImplementedError

    def load(self, frame: Frame) -> int:
        raise NotImplementedError

    def finish(self, counts: dict[str, int]) -> None:
        pass


class _SqliteLoader(_Loader):
    def empty(self, tables: list[str]) -> None:
        for name in tables:
            self.connection.execute(text(f'DELETE FROM "{name}"'))

    def load(self, frame: Frame) -> int:
        return insert_frame_sqlite(self.connection.connection.driver_connection, frame)


class _PostgresLoader(_Loader):
    def run(self, emptied: list[str], ctx: Context) -> dict[str, int]:
        # Settings for this transaction only: a bulk load, rebuilt indexes.
        self.connection.execute(text("SET LOCAL synchronous_commit = off"))
        self.connection.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        return super().run(emptied, ctx)

    def empty(self, tables: list[str]) -> None:
        self.connection.execute(text(f"TRUNCATE {', '.join(_quote(t) for t in tables)} RESTART IDENTITY"))

    def load(self, frame: Frame) -> int:
        # Building an index once after a big load is much cheaper than updating it per row.
        table = schema.metadata.tables[frame.table]
        indexes = table.indexes if len(frame) >= REBUILD_INDEXES_FROM_ROWS else ()
        for index in indexes:
            self.connection.execute(text(f"DROP INDEX IF EXISTS {_quote(index.name)}"))
        # FREEZE: the table was truncated in this transaction, so rows can be written frozen.
        rows = copy_frame_postgres(self.connection.connection.driver_connection, frame, table, freeze=True)
        for index in indexes:
            index.create(self.connection)
        return rows

    def finish(self, counts: dict[str, int]) -> None:
        # Ids were written explicitly: move each sequence past the highest one.
        for table in schema.metadata.sorted_tables:
            column = table.c.get("id")
            if column is None or not column.autoincrement or table.name not in counts:
                continue
            self.connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                f"COALESCE((SELECT max(id) FROM {_quote(table.name)}), 0) + 1, false)"
            ), {"table": _quote(table.name)})


def _analyze(engine, counts: dict[str, int]) -> None:
    # Fresh statistics, so the jobs' first queries get good plans.
    with engine.begin() as connection:
        for name, rows in counts.items():
            if rows:
                connection.execute(text(f"ANALYZE {_quote(name)}"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
