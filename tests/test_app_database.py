"""The project on the web app's own, existing database: tables the app created by hand with
only the contract's columns, in other compatible types, with rows already in them. After
`db upgrade` and `seed` every job and asset runs green, tables no rule targets are left
byte for byte as they were, and a second `db upgrade` changes nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import dagster as dg
import pytest
from sqlalchemy import text

from ops_platform.db.engine import make_engine
from ops_platform.db.migrate import current_revision, head_revision, upgrade, upgrade_sql
from ops_platform.db.seed import seed_database
from ops_platform.demo import _demo_runs, _failure_message
from tests.app_schema import create_app_schema

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


@pytest.fixture(params=["sqlite", "postgres"])
def app_url(request, tmp_path, monkeypatch):
    """The app's own schema, filled by `seed` through the live column types, then upgraded."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    engine = make_engine(url)
    create_app_schema(engine)
    engine.dispose()
    upgrade(url)
    seed_database(url, 60, seed=11, progress=None)
    for name, value in {
        "OPS_DATABASE_URL": url,
        "OPS_DATA_DIR": str(tmp_path / "data"),
        "OPS_LOG_DIR": str(tmp_path / "logs"),
    }.items():
        monkeypatch.setenv(name, value)
    return url


# Jobs run by hand with a config naming what to do (no schedule runs them bare).
NEEDS_CONFIG = {"replay_dead_items"}


def _defaults(job) -> dict:
    """Every configurable op with its config's defaults, as a schedule's tick sends it."""
    ops = {
        node.name: {"config": {}}
        for node in job.graph.nodes
        if node.definition.config_schema.as_field() is not None
        and node.definition.config_schema.as_field().config_type.kind.name.endswith("SHAPE")
    }
    return {"ops": ops} if ops else {}


def _cause(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            return error.message.strip().splitlines()[0]
    return ""


def _digest(engine, tables) -> dict[str, str]:
    digests = {}
    with engine.connect() as connection:
        for table in tables:
            rows = connection.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            digests[table] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    return digests


def test_every_job_and_asset_runs_green_on_the_apps_own_tables(app_url):
    from ops_platform.definitions import build_definitions
    from ops_platform.settings import load_settings

    engine = make_engine(app_url)
    before = _digest(engine, READ_ONLY_TABLES)
    defs = build_definitions(load_settings())
    failures, runs = [], 0
    with dg.DagsterInstance.ephemeral() as instance:
        for label, job, partition_key in _demo_runs(defs, datetime.now(UTC)):
            if label in NEEDS_CONFIG:
                continue
            result = job.execute_in_process(
                instance=instance,
                partition_key=partition_key,
                raise_on_error=False,
                run_config=_defaults(job),
            )
            runs += 1
            if not result.success:
                failures.append(f"{label}: {_failure_message(result)} {_cause(result)}")
    assert runs >= 20
    assert failures == [], "\n".join(failures)
    assert _digest(engine, READ_ONLY_TABLES) == before

    upgrade(app_url)  # a second upgrade is a no-op
    assert current_revision(engine) == head_revision()
    assert "nothing to run" in upgrade_sql(app_url)
    engine.dispose()
