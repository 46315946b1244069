"""database_maintenance: VACUUM (ANALYZE) by dead-tuple ratio on Postgres with the activity
report, ANALYZE and a note on SQLite, and pruning of old Dagster runs."""

import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.storage.runs.schema import RunsTable
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from ops_platform.db.engine import drop_schemas, make_engine, psycopg_url
from ops_platform.db.migrate import upgrade
from ops_platform.jobs import database_maintenance as database_maintenance_module
from ops_platform.jobs._run_pruning import prune_runs
from ops_platform.jobs.database_maintenance import database_maintenance
from ops_platform.resources.database import Database
from tests.conftest import POSTGRES_URL


def _run(database, instance=None, maintain=None, prune=None):
    return database_maintenance.execute_in_process(
        run_config={
            "ops": {
                "maintain_app_database": {"config": maintain or {}},
                "prune_dagster_runs": {"config": prune or {}},
            }
        },
        resources={"database": database},
        instance=instance,
        raise_on_error=False,
    )


def _metadata(result, op):
    [output] = [
        e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == op
    ]
    return {k: v.value for k, v in output.event_specific_data.metadata.items()}


# --- Postgres ---------------------------------------------------------------------------


@pytest.fixture
def pg_database(postgres_schema_url):
    upgrade(postgres_schema_url)
    database = Database(url=postgres_schema_url)
    yield database
    database.engine.dispose()


def _flush_stats(connection):
    # Statistics reach pg_stat_user_tables when a backend flushes them; force it.
    connection.execute(text("SELECT pg_stat_force_next_flush()"))
    connection.commit()
    connection.execute(text("SELECT 1"))
    connection.commit()


def _table_stats(engine, table):
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT n_live_tup, n_dead_tup, last_vacuum, last_analyze FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname = :t"
            ),
            {"t": table},
        ).one()


def _older_snapshot_exists(engine):
    """Another session of the database holds a snapshot: VACUUM may not free dead tuples
    newer than it (other work shares the test server)."""
    with engine.connect() as connection:
        return (
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            > 0
        )


def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def dead_tuples(pg_database):
    """notifications: 4,000 rows, 3,000 deleted (ratio 0.75); courses: 1,000 rows, 10 deleted."""
    engine = pg_database.engine
    with engine.connect() as connection:
        for table in ("notifications", "courses"):  # only this job vacuums them during the test
            connection.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        connection.execute(
            text(
                "INSERT INTO notifications (user_id, title, body, created_at) "
                "SELECT g % 100, 'title ' || g, 'body', now() FROM generate_series(1, 4000) g"
            )
        )
        connection.execute(
            text(
                "INSERT INTO courses (title) SELECT 'course ' || g FROM generate_series(1, 1000) g"
            )
        )
        connection.commit()
        connection.execute(text("DELETE FROM notifications WHERE id % 4 <> 0"))
        connection.execute(text("DELETE FROM courses WHERE id <= 10"))
        connection.commit()
        _flush_stats(connection)
    assert _wait_for(lambda: _table_stats(engine, "notifications").n_dead_tup >= 3000)
    return pg_database


@pytest.fixture
def other_schema_with_dead_tuples():
    """A table with many dead tuples in another schema: never ours to vacuum."""
    schema = f"o_{uuid.uuid4().hex[:10]}"
    engine = create_engine(psycopg_url(POSTGRES_URL))
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connection.execute(
            text(f'CREATE TABLE "{schema}".junk AS SELECT g AS id FROM generate_series(1, 2000) g')
        )
        connection.commit()
        connection.execute(text(f'DELETE FROM "{schema}".junk'))
        connection.commit()
        _flush_stats(connection)
    yield schema
    with engine.begin() as connection:
        drop_schemas(connection, schema)
    engine.dispose()


def test_postgres_vacuums_tables_past_the_threshold(dead_tuples, other_schema_with_dead_tuples):
    engine = dead_tuples.engine
    result = _run(dead_tuples)
    assert result.success
    metadata = _metadata(result, "maintain_app_database")
    assert metadata["backend"] == "postgresql"
    assert metadata["tables_vacuumed"] == 1 and metadata["rows_changed"] == 1
    assert "| notifications" in metadata["vacuum"] and "vacuumed" in metadata["vacuum"]
    assert "courses" not in metadata["vacuum"]

    assert _wait_for(lambda: _table_stats(engine, "notifications").last_vacuum is not None)
    stats = _table_stats(engine, "notifications")
    assert stats.last_analyze is not None
    if not _older_snapshot_exists(engine):
        assert stats.n_dead_tup < 100
    assert _table_stats(engine, "courses").last_vacuum is None
    with engine.connect() as connection:
        other = connection.execute(
            text(
                "SELECT last_vacuum FROM pg_stat_user_tables WHERE schemaname = :s AND relname = 'junk'"
            ),
            {"s": other_schema_with_dead_tuples},
        ).scalar_one()
    assert other is None

    # The activity report is there, as Markdown tables.
    assert metadata["connections_total"] >= 1 and metadata["max_connections"] > 0
    assert (
        "| state" in metadata["connections_by_state"]
        and "active" in metadata["connections_by_state"]
    )
    assert "idle_in_transaction" in metadata and "long_running_queries" in metadata


def test_postgres_report_lists_idle_in_transaction_and_long_queries(pg_database):
    engine = pg_database.engine
    other = make_engine(pg_database.url)
    idle = other.connect()
    idle.execute(text("SELECT 'holding a transaction open' AS marker"))  # transaction left open
    sleeper_pid = {}

    def sleep_long():
        with other.connect() as connection:
            sleeper_pid["pid"] = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with contextlib.suppress(Exception):  # cancelled below
                connection.execute(text("SELECT pg_sleep(30)"))

    thread = threading.Thread(target=sleep_long)
    thread.start()
    try:

        def sleeping_long_enough():
            if "pid" not in sleeper_pid:
                return False
            with engine.connect() as connection:
                return (
                    connection.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND state = 'active' "
                            "AND query_start < clock_timestamp() - interval '1.5 seconds'"
                        ),
                        {"pid": sleeper_pid["pid"]},
                    ).scalar_one()
                    == 1
                )

        assert _wait_for(sleeping_long_enough, seconds=20)
        result = _run(pg_database, maintain={"long_query_seconds": 1})
        metadata = _metadata(result, "maintain_app_database")
        assert metadata["idle_in_transaction"] >= 1
        assert "holding a transaction open" in metadata["idle_in_transaction_sessions"]
        assert metadata["long_running_queries"] >= 1
        assert "pg_sleep(30)" in metadata["long_running_query_list"]
    finally:
        with engine.connect() as connection:
            connection.execute(
                text("SELECT pg_cancel_backend(:pid)"), {"pid": sleeper_pid.get("pid", 0)}
            )
        thread.join()
        idle.close()
        other.dispose()


def test_postgres_dry_run_vacuums_nothing(dead_tuples):
    result = _run(dead_tuples, maintain={"dry_run": True})
    metadata = _metadata(result, "maintain_app_database")
    assert metadata["tables_due"] == 1 and metadata["rows_changed"] == 0
    assert "would vacuum" in metadata["vacuum"]
    assert _table_stats(dead_tuples.engine, "notifications").last_vacuum is None


def test_postgres_second_run_changes_nothing(dead_tuples):
    assert _metadata(_run(dead_tuples), "maintain_app_database")["rows_changed"] == 1
    assert _wait_for(
        lambda: _table_stats(dead_tuples.engine, "notifications").last_vacuum is not None
    )
    second = _metadata(_run(dead_tuples), "maintain_app_database")
    assert second["rows_changed"] == 0 and second["tables_vacuumed"] == 0


def test_postgres_dead_tuples_surviving_a_recent_vacuum_wait(dead_tuples):
    engine = dead_tuples.engine
    holder = make_engine(dead_tuples.url)
    with holder.connect() as snapshot:
        # An open REPEATABLE READ snapshot older than the deletes keeps their tuples alive.
        snapshot.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        snapshot.execute(text("SELECT count(*) FROM courses")).scalar_one()
        with engine.connect() as connection:
            connection.execute(text("DELETE FROM courses WHERE id > 500"))
            connection.commit()
            _flush_stats(connection)
        assert _wait_for(lambda: _table_stats(engine, "courses").n_dead_tup >= 490)
        first = _metadata(_run(dead_tuples), "maintain_app_database")
        assert first["tables_vacuumed"] == 2
        assert _wait_for(lambda: _table_stats(engine, "courses").last_vacuum is not None)
        assert _table_stats(engine, "courses").n_dead_tup >= 490  # held by the snapshot
        second = _metadata(_run(dead_tuples), "maintain_app_database")
        assert second["rows_changed"] == 0 and second["tables_recently_vacuumed"] >= 1
        assert "not again: vacuumed at" in second["vacuum"]
        snapshot.rollback()
    holder.dispose()
    again = _metadata(
        _run(dead_tuples, maintain={"revacuum_after_hours": 0}), "maintain_app_database"
    )
    assert again["tables_vacuumed"] >= 1


def test_postgres_locked_table_is_skipped_not_fatal(dead_tuples):
    locker = make_engine(dead_tuples.url)
    with locker.connect() as connection:
        connection.execute(text("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE"))
        result = _run(dead_tuples, maintain={"lock_timeout_seconds": 0.5})
        connection.rollback()
    locker.dispose()
    assert result.success
    metadata = _metadata(result, "maintain_app_database")
    assert metadata["tables_vacuumed"] == 0 and metadata["problems"] == 1
    assert "skipped: canceling statement due to lock timeout" in metadata["vacuum"]


def test_postgres_concurrent_run_does_not_act(dead_tuples):
    with dead_tuples.job_lock("database_maintenance"):
        result = _run(dead_tuples)
    assert result.success
    assert _metadata(result, "maintain_app_database")["rows_changed"] == 0
    assert _table_stats(dead_tuples.engine, "notifications").last_vacuum is None


# --- SQLite -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    database = Database(url=url)
    yield database
    database.engine.dispose()


def test_sqlite_analyzes_with_a_note(sqlite_database):
    with sqlite_database.begin() as connection:
        connection.execute(text("INSERT INTO courses (title) VALUES ('a'), ('b')"))
    result = _run(sqlite_database)
    assert result.success
    metadata = _metadata(result, "maintain_app_database")
    assert metadata["backend"] == "sqlite" and "ran ANALYZE and PRAGMA optimize" in metadata["note"]
    with sqlite_database.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM sqlite_stat1")).scalar_one() > 0


def test_sqlite_dry_run_says_what_it_would_do(sqlite_database):
    metadata = _metadata(_run(sqlite_database, maintain={"dry_run": True}), "maintain_app_database")
    assert metadata["note"].startswith("dry run: would run ANALYZE")
    with sqlite_database.connect() as connection:
        assert (
            connection.execute(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
            ).scalar_one()
            == 0
        )


# --- Dagster run pruning ----------------------------------------------------------------


@dg.op
def _noop():
    return 1


@dg.job
def _tiny_job():
    _noop()


def _age_run(instance, run_id, days):
    created = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
    with instance.run_storage.connect() as connection:
        connection.execute(
            RunsTable.update().where(RunsTable.c.run_id == run_id).values(create_timestamp=created)
        )


@pytest.fixture
def instance_with_runs():
    with dg.instance_for_test() as instance:
        runs = []
        for status in (
            dg.DagsterRunStatus.SUCCESS,
            dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.SUCCESS,
        ):
            run = dg.DagsterRun(job_name="some_job", run_id=str(uuid.uuid4()), status=status)
            instance.add_run(run)
            runs.append(run.run_id)
        runs[0] = _tiny_job.execute_in_process(
            instance=instance
        ).run_id  # one with a real event log
        _age_run(instance, runs[0], 91)
        _age_run(instance, runs[1], 120)
        stuck = dg.DagsterRun(
            job_name="some_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
        )
        instance.add_run(stuck)
        _age_run(instance, stuck.run_id, 200)
        yield instance, runs, stuck.run_id


def _run_ids(instance):
    return {run.run_id for run in instance.get_runs()}


def test_old_finished_runs_are_deleted(instance_with_runs, sqlite_database):
    instance, runs, stuck = instance_with_runs
    result = _run(sqlite_database, instance=instance)
    assert result.success
    remaining = _run_ids(instance)
    assert runs[0] not in remaining and runs[1] not in remaining
    assert {runs[2], stuck, result.run_id} <= remaining
    metadata = _metadata(result, "prune_dagster_runs")
    assert metadata["runs_deleted"] == 2 and metadata["unfinished_old_runs"] == 1
    assert instance.all_logs(runs[0]) == []


def test_run_pruning_dry_run_and_second_run(instance_with_runs, sqlite_database):
    instance, runs, stuck = instance_with_runs
    before = _run_ids(instance)
    dry = _run(sqlite_database, instance=instance, prune={"dry_run": True})
    assert _metadata(dry, "prune_dagster_runs")["runs_matched"] == 2
    assert _run_ids(instance) == before | {dry.run_id}
    assert (
        _metadata(_run(sqlite_database, instance=instance), "prune_dagster_runs")["runs_deleted"]
        == 2
    )
    assert (
        _metadata(_run(sqlite_database, instance=instance), "prune_dagster_runs")["runs_deleted"]
        == 0
    )


def test_run_retention_boundary(instance_with_runs):
    instance, runs, stuck = instance_with_runs
    now = datetime.now(UTC)
    assert prune_runs(instance, now - timedelta(days=120, minutes=1), dry_run=True).matched == 0
    assert (
        prune_runs(instance, now - timedelta(days=91) + timedelta(minutes=1), dry_run=True).matched
        == 2
    )
    assert (
        prune_runs(instance, now - timedelta(days=91) - timedelta(minutes=1), dry_run=True).matched
        == 1
    )


def test_postgres_a_retried_run_counts_the_tables_vacuumed_before_the_fault(
    dead_tuples, monkeypatch
):
    """The connection is lost after the VACUUMs, while the activity report is read: the retry
    finds the tables vacuumed already, and the run still reports them as its own."""
    real_report = database_maintenance_module.activity_report
    calls = {"n": 0}

    def lose_the_connection_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real_report(*args, **kwargs)

    monkeypatch.setattr(database_maintenance_module, "activity_report", lose_the_connection_once)
    result = _run(dead_tuples)
    assert result.success
    metadata = _metadata(result, "maintain_app_database")
    # The retry may still see the old statistics and vacuum again: at least the one.
    assert metadata["tables_vacuumed"] == metadata["rows_changed"] >= 1
    assert metadata["attempts"] == 2
    assert metadata["done_by_earlier_attempts"] == {"vacuumed_before_retry": 1}


def test_a_retried_run_pruning_counts_the_runs_deleted_before_the_fault(
    instance_with_runs, database, monkeypatch
):
    instance, runs, stuck = instance_with_runs
    real_delete = instance.delete_run
    calls = {"n": 0}

    def lose_the_storage_on_the_second_delete(run_id):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OperationalError("DELETE FROM runs", {}, Exception("server closed"))
        return real_delete(run_id)

    monkeypatch.setattr(instance, "delete_run", lose_the_storage_on_the_second_delete)
    result = _run(database, instance=instance)
    assert result.success
    assert runs[0] not in _run_ids(instance) and runs[1] not in _run_ids(instance)
    metadata = _metadata(result, "prune_dagster_runs")
    assert metadata["runs_deleted"] == metadata["rows_changed"] == 2
    assert metadata["runs_matched"] == 2
    assert metadata["attempts"] == 2
    assert metadata["done_by_earlier_attempts"] == {"deleted": 1, "matched": 1}


def test_a_run_that_cannot_be_deleted_is_left_alone_and_counted(
    instance_with_runs, database, monkeypatch
):
    """A run whose stored records are broken: the others are still pruned, the batch does
    not fail, and the run is counted by the error met."""
    instance, runs, stuck = instance_with_runs
    real_delete = instance.delete_run

    def broken_records(run_id):
        if run_id == runs[0]:
            raise ValueError(f"run {run_id}: snapshot cannot be deserialized")
        return real_delete(run_id)

    monkeypatch.setattr(instance, "delete_run", broken_records)
    result = _run(database, instance=instance)
    assert result.success
    remaining = _run_ids(instance)
    assert runs[0] in remaining and runs[1] not in remaining
    metadata = _metadata(result, "prune_dagster_runs")
    assert metadata["runs_deleted"] == 1 and metadata["runs_matched"] == 2
    assert metadata["runs_not_deleted"] == 1
    assert metadata["runs_not_deleted_by_error"] == {"ValueError": 1}
