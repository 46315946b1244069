"""`ops-platform db upgrade [--sql]`: Alembic revisions that create the contract tables only
when missing and the project's own tables in a namespace of their own, on an empty database
and on one the app created, idempotently."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from ops_platform.cli import main
from ops_platform.db import schema
from ops_platform.db.engine import make_engine, split_state_schema, state_schema
from ops_platform.db.migrate import current_revision, head_revision, upgrade, upgrade_sql
from ops_platform.settings import SettingsError, load_settings
from tests.app_schema import create_app_schema


@pytest.fixture
def app_url(empty_url):
    """The app's own schema with a few rows, before the project ever ran."""
    engine = make_engine(empty_url)
    create_app_schema(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (email, created_at) VALUES "
                "('a@example.com', '2026-01-02 03:04:05'), ('b@example.com', '2026-01-03 00:00:00')"
            )
        )
        connection.execute(
            text("INSERT INTO secrets (name, value_ciphertext) VALUES ('api', 'c1')")
        )
    engine.dispose()
    return empty_url


def _snapshot(engine) -> dict[str, object]:
    """Every app table's columns, indexes and rows."""
    inspector = inspect(engine)
    snapshot = {}
    with engine.connect() as connection:
        for table in sorted(inspector.get_table_names()):
            columns = [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ]
            indexes = sorted(i["name"] for i in inspector.get_indexes(table))
            rows = connection.execute(text(f'SELECT * FROM "{table}" ORDER BY 1')).all()
            snapshot[table] = (columns, indexes, [tuple(r) for r in rows])
    return snapshot


def _state_tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names(schema=state_schema(engine)))


def test_empty_database_gets_the_contract_and_the_project_tables(empty_url):
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        app_tables = set(inspect(engine).get_table_names())
        assert set(schema.CONTRACT_TABLES) <= app_tables
        assert "alembic_version" not in app_tables and "job_locks" not in app_tables
        assert {
            "alembic_version",
            *(t.name for t in schema.state_metadata.sorted_tables),
        } <= _state_tables(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_app_tables_and_rows_are_left_exactly_as_they_were(app_url):
    engine = make_engine(app_url)
    try:
        before = _snapshot(engine)
        upgrade(app_url)
        assert _snapshot(engine) == before  # no column, index or row of the app touched
        assert "job_locks" in _state_tables(engine)
        upgrade(app_url)  # a second upgrade is a no-op
        assert _snapshot(engine) == before
        assert current_revision(engine) == head_revision()
        assert "nothing to run" in upgrade_sql(app_url)
    finally:
        engine.dispose()


def test_upgrade_sql_prints_the_ddl_without_running_it(app_url, empty_url, capsys, monkeypatch):
    monkeypatch.setenv("OPS_DATABASE_URL", app_url)
    assert main(["db", "upgrade", "--sql"]) == 0
    sql = capsys.readouterr().out
    state = split_state_schema(app_url)[1]
    assert "job_locks" in sql and f"{state}.alembic_version" in sql.replace('"', "")
    assert "CREATE TABLE users" not in sql  # the app already has it
    engine = make_engine(app_url)
    try:
        assert current_revision(engine) is None and "job_locks" not in _state_tables(engine)
    finally:
        engine.dispose()


def test_upgrade_sql_on_an_empty_database_creates_the_contract_tables(empty_url):
    sql = upgrade_sql(empty_url)
    for table in schema.CONTRACT_TABLES:
        assert f"CREATE TABLE {table} (" in sql, table


def test_state_schema_is_configurable(postgres_schema_url, monkeypatch):
    base, _ = split_state_schema(postgres_schema_url)
    url = base.render_as_string(hide_password=False)
    schema_name = f"{url.rsplit('search_path%3D', 1)[1]}_state"
    monkeypatch.setenv("OPS_DATABASE_URL", url)
    monkeypatch.setenv("OPS_STATE_SCHEMA", schema_name)
    settings = load_settings()
    upgrade(settings.app_database_url)
    engine = make_engine(settings.app_database_url)
    try:
        assert state_schema(engine) == schema_name
        assert "job_locks" in set(inspect(engine).get_table_names(schema=schema_name))
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
    finally:
        engine.dispose()


def test_a_bad_state_schema_name_is_a_settings_error():
    with pytest.raises(SettingsError, match="OPS_STATE_SCHEMA"):
        load_settings({"OPS_STATE_SCHEMA": "ops; DROP TABLE users"})


def test_sqlite_keeps_the_project_tables_in_an_attached_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    assert (tmp_path / "app.ops.db").exists()
    engine = make_engine(url)
    try:
        assert "job_locks" not in inspect(engine).get_table_names()
        assert "job_locks" in _state_tables(engine)
    finally:
        engine.dispose()
