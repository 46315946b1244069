"""Engines for the app database, with the few dialect differences kept in one place."""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, text
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


# A Postgres server that stops answering must fail a run in bounded time, never hang it.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_STATEMENT_TIMEOUT_S = 300.0
# Seeding and migrations: one statement may copy or index millions of rows.
LONG_STATEMENT_TIMEOUT_S = 3600.0
# TCP keepalives: a peer gone from the network (host down, cable cut) is noticed in about a
# minute even while the connection is idle; unacknowledged writes give up as soon.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def database_peer(url: str) -> str:
    """`host:port` of a database URL, for messages (never its credentials)."""
    parsed = make_url(psycopg_url(url))
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def silent_database_message(peer: str, seconds: float, name: str = "app database") -> str:
    return f"{name} at {peer} did not answer within {seconds:g} s"


def _postgres_connect_args(parsed, connect_timeout_s: float, statement_timeout_s: float) -> dict:
    """libpq parameters bounding every wait on the server; the URL's own values win."""
    query = parsed.query
    args: dict = {key: value for key, value in KEEPALIVES.items() if key not in query}
    if "connect_timeout" not in query:
        args["connect_timeout"] = max(2, math.ceil(connect_timeout_s))  # libpq's minimum
    options = query.get("options", "")
    options = " ".join(options) if isinstance(options, tuple) else options
    if "statement_timeout" not in options:
        args["options"] = f"{options} -c statement_timeout={int(statement_timeout_s * 1000)}"
        args["options"] = args["options"].strip()
    return args


@functools.cache
def _answering_connection_class():
    """A psycopg connection that gives up on a server silent for longer than its
    `answer_timeout_s`: the server enforces statement_timeout itself, but a stopped or
    wedged server (or a peer that accepted and went quiet) never sends that error, and
    the kernel keeps acknowledging keepalives of a stopped process."""
    import psycopg
    from psycopg import errors

    class AnsweringConnection(psycopg.Connection):
        answer_timeout_s: float | None = None  # statement timeout + grace
        grace_s: float = DEFAULT_CONNECT_TIMEOUT_S
        peer: str = ""

        def wait(self, gen, interval=0.1, timeout=None):
            if timeout is not None or not self.answer_timeout_s:
                return super().wait(gen, interval=interval, timeout=timeout)
            try:
                return super().wait(gen, interval=interval, timeout=self.answer_timeout_s)
            except errors._WaitTimeout:
                # Half a protocol exchange is left on the wire: the connection is unusable.
                self.pgconn.finish()
                message = silent_database_message(self.peer, self.answer_timeout_s)
                raise psycopg.OperationalError(message) from None

    return AnsweringConnection


def _connect_answering(cparams: dict, peer: str, grace_s: float, answer_s: float):
    import psycopg

    try:
        connection = _answering_connection_class().connect(**cparams)
    except psycopg.errors.ConnectionTimeout:
        seconds = int(cparams.get("connect_timeout") or grace_s)
        raise psycopg.OperationalError(
            silent_database_message(peer, seconds) + " (connect timeout)"
        ) from None
    connection.answer_timeout_s, connection.grace_s, connection.peer = answer_s, grace_s, peer
    return connection


@contextlib.contextmanager
def statement_timeout(connection: Connection, seconds: float) -> Iterator[None]:
    """Let statements of `connection` run up to `seconds` inside the block (a VACUUM of a big
    table), on the server and in the client's wait; both limits are restored after."""
    dbapi = connection.connection.dbapi_connection
    if not is_postgres(connection) or not hasattr(dbapi, "answer_timeout_s"):
        yield
        return
    previous = dbapi.answer_timeout_s
    connection.execute(text(f"SET statement_timeout = '{int(seconds * 1000)}ms'"))
    dbapi.answer_timeout_s = seconds + dbapi.grace_s
    try:
        yield
    finally:
        dbapi.answer_timeout_s = previous
        if not connection.invalidated:
            connection.execute(text("RESET statement_timeout"))


def make_engine(
    url: str,
    state_schema: str | None = None,
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    **kwargs,
) -> Engine:
    """Create an engine for `url`; SQLite gets WAL, a busy timeout, its folder created and the
    project's namespace attached. `state_schema` overrides the one the URL names.

    Postgres (the app's tables and the project's own) gets a connect timeout, TCP
    keepalives and a per-statement timeout; a server that does not answer within
    statement timeout + connect timeout is given up on with `app database at host:port
    did not answer within N s` (a transient OperationalError, so the op retries and the
    next run continues where this one stopped)."""
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
    connect_args = _postgres_connect_args(parsed, connect_timeout_s, statement_timeout_s)
    engine = create_engine(
        parsed, connect_args={**connect_args, **kwargs.pop("connect_args", {})}, **kwargs
    )
    if parsed.get_driver_name() == "psycopg":
        peer = database_peer(url)
        answer_s = statement_timeout_s + connect_timeout_s

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect, _record, _cargs, cparams):
            return _connect_answering(cparams, peer, connect_timeout_s, answer_s)

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
