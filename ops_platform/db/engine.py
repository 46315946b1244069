"""Engines for the app database, with the few dialect differences kept in one place."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

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


# The project never alters a table the app owns: its own state lives in a namespace of its
# own. Project-owned `Table`s are declared in the placeholder schema `STATE`; every engine
# translates it to the configured name (a Postgres schema, or an attached file on SQLite).
STATE = "ops"
DEFAULT_STATE_SCHEMA = "ops"
# Query parameter of the database URL naming the project's namespace (set from
# OPS_STATE_SCHEMA); taken off the URL before the driver sees it.
STATE_SCHEMA_PARAM = "ops_state_schema"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class StateSchemaError(ValueError):
    """The project's schema name is not a plain SQL identifier."""


def check_state_schema(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise StateSchemaError(
            f"state schema {name!r} is not a plain SQL identifier "
            "(letters, digits and _, at most 63, not starting with a digit)"
        )
    return name


def split_state_schema(url: str | URL) -> tuple[URL, str]:
    """The driver's URL and the project's schema name that `url` carries."""
    parsed = make_url(url)
    schema = parsed.query.get(STATE_SCHEMA_PARAM, DEFAULT_STATE_SCHEMA)
    return parsed.difference_update_query([STATE_SCHEMA_PARAM]), check_state_schema(schema)


def with_state_schema(url: str, schema: str) -> str:
    """`url` naming `schema` as the project's namespace."""
    parsed = make_url(url).update_query_dict({STATE_SCHEMA_PARAM: check_state_schema(schema)})
    return parsed.render_as_string(hide_password=False)


def schema_url(base: str, schema: str) -> str:
    """`base` with its search_path set to `schema` and the project's own tables in
    `<schema>_ops` (tests and benchmarks use a schema pair each)."""
    sep = "&" if "?" in base else "?"
    return (
        f"{base}{sep}options={quote(f'-csearch_path={schema}')}&{STATE_SCHEMA_PARAM}={schema}_ops"
    )


def drop_schemas(connection, schema: str) -> None:
    """Drop a Postgres schema made for `schema_url` and the project's schema beside it."""
    from sqlalchemy import text

    for name in (schema, f"{schema}_ops"):
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def sqlite_state_file(database: str | None, schema: str) -> str:
    """The file attached as the project's namespace next to the SQLite app database."""
    if not database or database == ":memory:":
        return ":memory:"
    path = Path(database)
    return str(path.with_name(f"{path.stem}.{schema}{path.suffix or '.db'}"))


def make_engine(url: str, state_schema: str | None = None, **kwargs) -> Engine:
    """Create an engine for `url`; SQLite gets WAL, a busy timeout, its folder created and the
    project's namespace attached. `state_schema` overrides the one the URL names."""
    url = psycopg_url(url)  # the resource may get the variable's raw `postgres://…`
    parsed, named = split_state_schema(url)
    state_schema = check_state_schema(state_schema) if state_schema else named
    kwargs.setdefault("execution_options", {})
    kwargs["execution_options"] = {
        **kwargs["execution_options"],
        "schema_translate_map": {STATE: state_schema},
    }
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        state_file = sqlite_state_file(parsed.database, state_schema)
        engine = create_engine(parsed, connect_args={"timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute(f'ATTACH DATABASE ? AS "{state_schema}"', (state_file,))
            for schema in ("main", state_schema):
                cursor.execute(f'PRAGMA "{schema}".journal_mode=WAL')
                cursor.execute(f'PRAGMA "{schema}".synchronous=NORMAL')
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _utc_session(dbapi_connection, _record):
        # An app's `timestamp without time zone` columns hold UTC: comparing and writing them
        # against aware times converts through the session zone, which must be UTC.
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.close()
        dbapi_connection.commit()

    return engine


def state_schema(bind) -> str:
    """The name of the project's namespace on `bind` (an Engine or Connection)."""
    translate = bind.get_execution_options().get("schema_translate_map") or {}
    return translate.get(STATE, DEFAULT_STATE_SCHEMA)


def state_table(bind, name: str) -> str:
    """`name` qualified with the project's namespace, for raw SQL."""
    quote_ = bind.dialect.identifier_preparer.quote
    return f"{quote_(state_schema(bind))}.{quote_(name)}"


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


def dialect_insert(bind):
    """The INSERT construct of `bind`'s dialect (it has ON CONFLICT on both databases)."""
    if is_postgres(bind):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def upsert(connection, table, rows: list[dict], keys: tuple[str, ...]) -> None:
    """Insert `rows` into `table`, replacing the other columns of a row whose `keys` exist."""
    if not rows:
        return
    statement = dialect_insert(connection)(table).values(rows)
    updates = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    statement = (
        statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
        if updates
        else statement.on_conflict_do_nothing(index_elements=list(keys))
    )
    connection.execute(statement)


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
