"""Helpers shared by the cleanup and expiry job tests."""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from ops_platform.config_checks import check_config_at_launch
from ops_platform.db.engine import utcnow


class Crash(RuntimeError):
    """Stands in for the process dying between two batches."""


def crash_after_first_batch(message: str) -> None:
    """A progress callback: progress is reported after a batch commits, so raising here
    leaves exactly the first batch done."""
    raise Crash(message)


@dataclass(frozen=True)
class Relative:
    """A time relative to the moment a fixture inserts its rows, so that module-level test
    data does not age while the suite runs."""

    offset: timedelta


def ago(**delta) -> Relative:
    return Relative(-timedelta(**delta))


def ahead(**delta) -> Relative:
    return Relative(timedelta(**delta))


def at(value):
    """The real time of a `Relative` (None and plain values pass through)."""
    return utcnow() + value.offset if isinstance(value, Relative) else value


def run_job(job, op_name: str, database, **config) -> tuple[int, dict]:
    """Run an op job in process, its config checked as the code location checks it (the
    `dg.Config` rules at launch); returns the op's output (rows changed) and its metadata."""
    check_config_at_launch(job.all_node_defs)
    result = job.execute_in_process(
        run_config={"ops": {op_name: {"config": config}}}, resources={"database": database}
    )
    assert result.success
    return result.output_for_node(op_name), output_metadata(result)


def output_metadata(result) -> dict:
    """The metadata values of the run's one op output."""
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {key: value.value for key, value in output.event_specific_data.metadata.items()}


def ids(engine, table) -> set[int]:
    with engine.connect() as connection:
        return set(connection.execute(select(table.c.id)).scalars())


def column(engine, table, name: str) -> dict:
    with engine.connect() as connection:
        return dict(connection.execute(select(table.c.id, table.c[name])).all())


def lose_the_lock_connection_once(monkeypatch) -> None:
    """The first release of a job lock fails as a lost database connection would (the work
    of that attempt is done and committed), so the op retries; later releases work."""
    import contextlib

    from sqlalchemy.exc import OperationalError

    from ops_platform.resources.database import Database

    real_lock = Database.job_lock
    lost = {"yet": False}

    @contextlib.contextmanager
    def job_lock(self, *args, **kwargs):
        with real_lock(self, *args, **kwargs):
            yield
        if not lost["yet"]:
            lost["yet"] = True
            raise OperationalError("SELECT pg_advisory_unlock", {}, Exception("server closed"))

    monkeypatch.setattr(Database, "job_lock", job_lock)
