"""Engines for the app database, with the few dialect differences kept in one place."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _adapt_datetime(value: datetime) -> str:
    # Same text form SQLAlchemy's DateTime uses on SQLite, so raw SQL parameters compare
    # correctly with stored values. Aware times are converted to UTC first.
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(SQLITE_TS_FORMAT)


sqlite3.register_adapter(datetime, _adapt_datetime)


def psycopg_url(url: str) -> str:
    """The SQLAlchemy URL of a Postgres server, on the psycopg 3 driver (the fast paths, such
    as COPY in the seed, use its API)."""
    for prefix in (
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def schema_url(base: str, schema: str) -> str:
    """`base` with its search_path set to `schema` (tests and benchmarks use a schema each)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine for `url`; SQLite gets WAL, a busy timeout and its folder created."""
    url = psycopg_url(url)  # the resource may get the variable's raw `postgres://…`
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def is_postgres(bind) -> bool:
    return bind.dialect.name == "postgresql"


def epoch_seconds(bind, column_sql: str) -> str:
    """SQL expression giving a timestamp column as seconds since the epoch."""
    if is_postgres(bind):
        return f"EXTRACT(EPOCH FROM {column_sql})"
    return f"((julianday({column_sql}) - 2440587.5) * 86400.0)"


def greatest(bind, *exprs: str) -> str:
    return f"{'GREATEST' if is_postgres(bind) else 'MAX'}({', '.join(exprs)})"


def least(bind, *exprs: str) -> str:
    return f"{'LEAST' if is_postgres(bind) else 'MIN'}({', '.join(exprs)})"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | str | None) -> datetime | None:
    """Normalise a timestamp read back from either database to an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
