"""The op decorator every op job uses: schedule-table tags, the singleton lock, the output of
a run that found the lock held, transient faults as retries, the run's duration."""

import dagster as dg
from pydantic import Field
from sqlalchemy.exc import OperationalError

from ops_platform.jobs._common import job_op, one_op_job
from ops_platform.resources.database import Database
from ops_platform.schedules.catalog import op_tags


class CountConfig(dg.Config):
    rows: int = Field(default=3, gt=0)


calls: list[int] = []


@job_op("session_cleanup", "Count rows.", when_lock_held={"rows_changed": 0})
def count_rows(context: dg.OpExecutionContext, config: CountConfig, database: Database):
    calls.append(config.rows)
    if context.retry_number == 0 and config.rows == 13:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    return dg.Output(config.rows, metadata={"rows_changed": config.rows})


@job_op("session_cleanup", "Count rows without the lock.", alone=False)
def count_rows_unlocked(context, config: CountConfig, database: Database) -> dg.Output[int]:
    calls.append(config.rows)
    return dg.Output(config.rows, metadata={"rows_changed": config.rows, "duration_s": -1.0})


def run(op, database: Database, **config):
    job = one_op_job("session_cleanup", op, "test job")
    result = job.execute_in_process(
        run_config={"ops": {op.name: {"config": config}}},
        resources={"database": database},
        raise_on_error=False,
    )
    outputs = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in outputs[0].event_specific_data.metadata.items()}
    return result, metadata


def test_the_op_has_its_jobs_tags_and_reads_config_and_resources(database):
    calls.clear()
    assert count_rows.tags == op_tags("session_cleanup")
    assert count_rows.description == "Count rows."
    result, metadata = run(count_rows, database, rows=5)
    assert result.success and result.output_for_node("count_rows") == 5 and calls == [5]
    assert metadata["rows_changed"] == 5 and metadata["duration_s"] >= 0


def test_a_run_that_finds_the_lock_held_changes_nothing_and_says_why(database):
    calls.clear()
    with database.job_lock("session_cleanup"):
        result, metadata = run(count_rows, database, rows=5)
    assert result.success and result.output_for_node("count_rows") == 0 and calls == []
    assert metadata["skipped"] == "another run holds the lock" and metadata["rows_changed"] == 0


def test_an_op_that_may_run_beside_itself_ignores_the_lock_and_keeps_its_duration(database):
    calls.clear()
    with database.job_lock("session_cleanup"):
        result, metadata = run(count_rows_unlocked, database, rows=7)
    assert result.success and calls == [7]
    assert metadata["rows_changed"] == 7 and metadata["duration_s"] == -1.0


def test_a_transient_fault_is_retried(database, monkeypatch):
    monkeypatch.setattr("ops_platform.retries.backoff_seconds", lambda *a, **k: 0.0)
    calls.clear()
    result, metadata = run(count_rows, database, rows=13)
    assert result.success and calls == [13, 13] and metadata["rows_changed"] == 13


@job_op("session_cleanup", "Count rows once.", alone=False, retried=False)
def count_rows_once(context, config: CountConfig, database: Database) -> dg.Output[int]:
    calls.append(config.rows)
    raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))


def test_an_op_whose_change_a_retry_would_repeat_is_not_retried(database):
    calls.clear()
    job = one_op_job("session_cleanup", count_rows_once, "test job")
    result = job.execute_in_process(
        run_config={"ops": {"count_rows_once": {"config": {"rows": 2}}}},
        resources={"database": database},
        raise_on_error=False,
    )
    assert not result.success and calls == [2]
