"""What the sensors share."""

import inspect
import json
from collections.abc import Callable

import dagster as dg

from ops_platform.schedules.build import default_sensor_status
from ops_platform.settings import Settings

ALERT_INTERVAL_S = 60

# Statuses of a run that has been launched and not yet finished.
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def job_run_active(instance: dg.DagsterInstance, job_name: str) -> bool:
    """Is a run of `job_name` queued or running? Sensors then skip, so a job never overlaps."""
    return bool(
        instance.get_run_records(
            dg.RunsFilter(job_name=job_name, statuses=ACTIVE_STATUSES), limit=1
        )
    )


def open_incidents(cursor: str | None) -> dict[str, dict]:
    """The open incidents an alerting sensor keeps in its cursor (`{"open": {...}}`)."""
    try:
        return dict(json.loads(cursor)["open"]) if cursor else {}
    except (ValueError, KeyError, TypeError):
        return {}


def request_when_due(
    context: dg.SensorEvaluationContext,
    job: dg.JobDefinition,
    due_run_key: Callable[[], str | None],
    nothing_due: str,
) -> dg.RunRequest | dg.SkipReason:
    """One run of `job` for the rows due now, keyed by `due_run_key()` (None: nothing is due,
    skip saying `nothing_due`); nothing while a run of `job` is queued or running, and the
    rows are not even read then."""
    if job_run_active(context.instance, job.name):
        return dg.SkipReason(f"a {job.name} run is already queued or running")
    run_key = due_run_key()
    if run_key is None:
        return dg.SkipReason(nothing_due)
    return dg.RunRequest(run_key=run_key)


def alert_sensor(name: str, description: str) -> Callable:
    """The decorator of an alerting sensor: on by default (an alert nobody switched on is no
    alert), evaluated once a minute."""
    return dg.sensor(
        name=name,
        minimum_interval_seconds=ALERT_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )


def job_sensor(
    settings: Settings,
    evaluate: Callable,
    job: dg.JobDefinition,
    interval_seconds: int,
    group: str,
    name: str | None = None,
) -> dg.SensorDefinition:
    """The sensor (`<job>_sensor` unless named) launching `job` as `evaluate` decides, every
    `interval_seconds` at most; on by default unless `group` is disabled (OPS_ENABLE_<GROUP>).
    Its description in the UI is `evaluate`'s docstring."""
    return dg.sensor(
        name=name or f"{job.name}_sensor",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=default_sensor_status(settings, group),
        description=" ".join(inspect.getdoc(evaluate).split()),
    )(evaluate)
