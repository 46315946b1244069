"""The jobs run with least privilege on Postgres: a role that may only SELECT, INSERT,
UPDATE and DELETE the app tables (and use their id sequences) and owns the project's
schema — no superuser, no CREATE on the database, no DDL on any app table. Every job and
asset runs green with it, and database_maintenance reports the tables it may not VACUUM."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from ops_platform.db.engine import make_engine, psycopg_url, schema_url, split_state_schema
from ops_platform.db.grants import grant_statements
from ops_platform.db.migrate import upgrade
from ops_platform.db.seed import seed_database
from tests.app_schema import create_app_schema, run_every_job
from tests.conftest import POSTGRES_URL


@pytest.fixture
def restricted(postgres_schema_url, monkeypatch, tmp_path):
    """(the jobs' role URL, the admin URL) on an app schema the admin owns."""
    admin_url = postgres_schema_url
    app_schema = admin_url.split("search_path%3D")[1].split("&")[0]
    state = split_state_schema(admin_url)[1]
    role = f"r_{uuid.uuid4().hex[:10]}"
    admin = create_engine(psycopg_url(POSTGRES_URL))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB'))
    engine = make_engine(admin_url)
    create_app_schema(engine)
    with engine.begin() as connection:
        for statement in grant_statements(role, app_schema, state):
            connection.execute(text(statement))
    engine.dispose()
    base = psycopg_url(POSTGRES_URL).replace("postgres@", f"{role}@", 1)
    role_url = schema_url(base, app_schema)
    upgrade(role_url)  # the role creates the project's tables in the schema it owns
    seed_database(admin_url, 60, seed=5, progress=None)  # the app's rows
    for name, value in {
        "OPS_DATABASE_URL": role_url,
        "OPS_DATA_DIR": str(tmp_path / "data"),
        "OPS_LOG_DIR": str(tmp_path / "logs"),
    }.items():
        monkeypatch.setenv(name, value)
    yield role_url, admin_url
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{state}" CASCADE'))
        connection.execute(text(f'DROP OWNED BY "{role}"'))
        connection.execute(text(f'DROP ROLE "{role}"'))
    admin.dispose()


def test_the_restricted_role_runs_every_job_and_asset(restricted):
    from ops_platform.definitions import build_definitions
    from ops_platform.settings import load_settings

    role_url, _ = restricted
    engine = make_engine(role_url)
    with engine.connect() as connection:
        assert (
            connection.execute(
                text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar_one()
            is False
        )
        with pytest.raises(ProgrammingError, match="must be owner"):
            connection.execute(text("ALTER TABLE users ADD COLUMN extra integer"))
    engine.dispose()
    failures, runs = run_every_job(build_definitions(load_settings()))
    assert runs >= 20
    assert failures == [], "\n".join(failures)


def test_maintenance_names_the_tables_it_may_not_vacuum(restricted):
    from ops_platform.jobs._vacuum import maintain_database

    role_url, _ = restricted
    engine = make_engine(role_url)
    result = maintain_database(engine, dead_ratio_threshold=0.0, min_dead_tuples=0)
    engine.dispose()
    not_owned = {outcome.table for outcome in result.not_owned}
    assert {"users", "sessions", "payments"} <= not_owned
    assert result.tables_vacuumed == 0 and result.problems == []
    assert all("not its owner" in outcome.status for outcome in result.not_owned)


def test_db_grants_prints_what_the_fixture_ran(postgres_schema_url, monkeypatch, capsys):
    from ops_platform.cli import main

    app_schema = postgres_schema_url.split("search_path%3D")[1].split("&")[0]
    monkeypatch.setenv("OPS_DATABASE_URL", postgres_schema_url)
    assert main(["db", "grants", "--role", "ops_jobs"]) == 0
    printed = capsys.readouterr().out.splitlines()
    state = split_state_schema(postgres_schema_url)[1]
    assert printed == [f"{s};" for s in grant_statements("ops_jobs", app_schema, state)]
    assert f'ON "{app_schema}"."users",' in printed[2] and "DELETE" in printed[2]
