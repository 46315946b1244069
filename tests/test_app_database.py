"""The project on the web app's own, existing database: tables the app created by hand with
only the contract's columns, in other compatible types, with rows already in them. After
`db upgrade` and `seed` every job and asset runs green, tables no rule targets are left
byte for byte as they were, and a second `db upgrade` changes nothing."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from ops_platform.db.engine import make_engine
from ops_platform.db.migrate import current_revision, head_revision, upgrade, upgrade_sql
from ops_platform.db.seed import seed_database
from tests.app_schema import create_app_schema, run_every_job
from tests.platform_env import platform_env

# App tables no job or asset writes: they must come out exactly as they went in.
READ_ONLY_TABLES = (
    "courses",
    "enrollments",
    "learning_events",
    "og_tiers",
    "stream_events",
    "reputation_events",
    "stored_files",
    "webhook_events",
    "projects",
    "notifications",
    "streams",
)


@pytest.fixture
def seeded_app_url(empty_url, tmp_path, monkeypatch):
    """The app's own schema, upgraded, then filled by `seed` through the live column types;
    the platform's environment points at it."""
    engine = make_engine(empty_url)
    create_app_schema(engine)
    engine.dispose()
    upgrade(empty_url)
    seed_database(empty_url, 60, seed=11, progress=None)
    platform_env(monkeypatch, tmp_path, empty_url)
    return empty_url


def _digest(engine, tables) -> dict[str, str]:
    digests = {}
    with engine.connect() as connection:
        for table in tables:
            rows = connection.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            digests[table] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    return digests


def test_every_job_and_asset_runs_green_on_the_apps_own_tables(seeded_app_url):
    from ops_platform.definitions import build_definitions
    from ops_platform.settings import load_settings

    engine = make_engine(seeded_app_url)
    before = _digest(engine, READ_ONLY_TABLES)
    defs = build_definitions(load_settings())
    failures, runs = run_every_job(defs)
    assert runs >= 20
    assert failures == [], "\n".join(failures)
    assert _digest(engine, READ_ONLY_TABLES) == before

    upgrade(seeded_app_url)  # a second upgrade is a no-op
    assert current_revision(engine) == head_revision()
    assert "nothing to run" in upgrade_sql(seeded_app_url)
    engine.dispose()


def test_db_check_names_a_missing_column_and_a_wrong_type(empty_url, monkeypatch, capsys):
    from ops_platform.cli import main
    from ops_platform.db.check import SchemaNotReady
    from ops_platform.jobs.sessions import session_cleanup
    from ops_platform.resources.database import Database

    engine = make_engine(empty_url)
    create_app_schema(
        engine,
        {
            ", og_expires_at {ts})": ")",  # a column left out
            "expires_at {tsz}, revoked_at": "expires_at integer, revoked_at",  # a time as integer
        },
    )
    upgrade(empty_url)
    monkeypatch.setenv("OPS_DATABASE_URL", empty_url)
    assert main(["db", "check"]) == 1
    captured = capsys.readouterr()
    assert "users.og_expires_at" in captured.out and "column missing" in captured.out
    assert "sessions.expires_at" in captured.out and "the jobs need timestamp" in captured.out
    assert "users.og_expires_at" in captured.err and "sessions.expires_at" in captured.err

    # The job stops before touching anything, naming the column and itself.
    result = session_cleanup.execute_in_process(
        resources={"database": Database(url=empty_url)}, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "RUN_FAILURE"] or [None]
    messages = " ".join(
        str(e.event_specific_data.error.message)
        if getattr(e, "event_specific_data", None) and getattr(e.event_specific_data, "error", None)
        else e.message or ""
        for e in result.all_events
    )
    assert "sessions.expires_at" in messages and "session_cleanup cannot run" in messages
    with pytest.raises(SchemaNotReady, match="og_daily_bonus"):
        from ops_platform.db.check import require_tables_for

        require_tables_for(engine, {"og_daily_bonus"})
    engine.dispose()


def test_db_check_passes_an_upgraded_app_schema_and_lists_the_indexes_to_add(
    empty_url, monkeypatch, capsys
):
    from ops_platform.cli import main

    engine = make_engine(empty_url)
    create_app_schema(engine)
    engine.dispose()
    upgrade(empty_url)
    monkeypatch.setenv("OPS_DATABASE_URL", empty_url)
    assert main(["db", "check"]) == 0
    out = capsys.readouterr().out
    assert "error" not in out.split("\n", 2)[-1].split()[:1]
    create = "CREATE INDEX CONCURRENTLY" if "postgres" in empty_url else "CREATE INDEX"
    assert f"{create} IF NOT EXISTS ix_payments_status_next_check ON payments" in out
    assert "ix_sessions_expires_at" not in out  # the app's own index covers it


def test_db_check_is_clean_on_a_database_the_project_created(db_url, monkeypatch, capsys):
    from ops_platform.cli import main

    monkeypatch.setenv("OPS_DATABASE_URL", db_url)
    assert main(["db", "check"]) == 0
    assert "every contract table" in capsys.readouterr().out


def test_seed_refuses_at_once_naming_the_columns_it_cannot_fill(empty_url):
    engine = make_engine(empty_url)
    create_app_schema(engine, {", og_expires_at {ts})": ")"})
    upgrade(empty_url)
    with pytest.raises(RuntimeError, match=r"users\.og_expires_at"):
        seed_database(empty_url, 10, progress=None)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    engine.dispose()
