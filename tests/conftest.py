"""Shared fixtures: an app database on SQLite and on Postgres for every test that asks.

Postgres comes from OPS_TEST_POSTGRES_URL (default the local server); each test gets a
schema of its own, dropped afterwards. With no server answering, Postgres cases skip with
the reason — unless OPS_REQUIRE_POSTGRES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os

# The tests' partition calendars start on a fixed day (the default moves with today).
os.environ.setdefault("OPS_PARTITIONS_START", "2025-12-01")
import uuid

import pytest
from sqlalchemy import create_engine, text

from ops_platform.db.engine import drop_schemas, psycopg_url, schema_url
from ops_platform.db.migrate import upgrade
from ops_platform.resources.database import Database
from tests.platform_env import platform_env

# Fixtures shared by several test modules, registered once instead of imported by each.
pytest_plugins = ["tests.s3_server"]

POSTGRES_URL = os.environ.get(
    "OPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("OPS_REQUIRE_POSTGRES") == "1"


def postgres_available() -> str | None:
    """None when the server answers, else the reason it does not."""
    try:
        engine = create_engine(psycopg_url(POSTGRES_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as error:  # any failure to connect is a reason to skip
        return f"no Postgres at {POSTGRES_URL}: {error.__class__.__name__}: {str(error).splitlines()[0]}"


def _need_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(f"OPS_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_schema_url():
    """A fresh, empty Postgres schema; yields a SQLAlchemy URL whose search_path is it."""
    _need_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(psycopg_url(POSTGRES_URL))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema_url(psycopg_url(POSTGRES_URL), schema)
    with admin.begin() as connection:
        drop_schemas(connection, schema)
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path):
    """A database with no tables at all: a new SQLite file, or a fresh Postgres schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def db_url(empty_url):
    """An upgraded, empty app database: a SQLite file, or a fresh Postgres schema."""
    upgrade(empty_url)
    return empty_url


@pytest.fixture
def database(db_url):
    """The `database` resource on the fresh app database."""
    resource = Database(url=db_url)
    yield resource
    resource.engine.dispose()


@pytest.fixture
def engine(database):
    return database.engine


@pytest.fixture
def ops_env(db_url, monkeypatch, tmp_path) -> dict[str, str]:
    """The platform's environment pointed at `db_url` (`platform_env`), run by operator
    `alice`; returns the variables set."""
    return platform_env(monkeypatch, tmp_path, db_url, OPS_OPERATOR="alice")
