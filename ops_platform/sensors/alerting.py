"""Alerting sensors, all sending through the `alerts` resource.

- `run_failure_alert_sensor`: every failed run alerts (job, run id, error); when a job's
  finished runs end in 3 failures in a row, one extra `critical` alert for that streak.
- `email_backlog_sensor`: more than 1,000 due email batches alerts once per crossing
  (and says when the backlog is back under); the state lives in the sensor cursor.
- `stalled_cleanup_sensor`: a cleanup job (group "cleanup" in the schedule table) whose
  successful runs reported `rows_changed = 0` on 7 different days in a row, with no run
  changing anything since, alerts once per stall (cursor state).
"""

import json
from datetime import UTC, datetime

import dagster as dg

from ops_platform.db.engine import utcnow
from ops_platform.jobs._email_queue import count_due
from ops_platform.jobs._history import run_rows_changed
from ops_platform.resources.alerts import Alerts
from ops_platform.resources.database import Database
from ops_platform.retries import CONFIG_FAILURE, FAILURE_KIND_TAG
from ops_platform.schedules.build import default_sensor_status
from ops_platform.schedules.catalog import SCHEDULES
from ops_platform.settings import Settings

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
CRITICAL_STREAK = 3
BACKLOG_THRESHOLD = 1000
STALL_DAYS = 7
STALL_LOOKBACK_RUNS = 500  # enough for 7 days of the most frequent cleanup (every 2 h + 12 h)
CLEANUP_JOBS = tuple(sorted({row.job_name for row in SCHEDULES if row.group == "cleanup"}))


# --- failed runs ------------------------------------------------------------------------------


def failure_streak(
    instance: dg.DagsterInstance, job_name: str, run_id: str, lookback: int = 20
) -> int:
    """Consecutive failures of `job_name` ending with run `run_id` (newest finished runs first)."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=FINISHED), limit=lookback
    )
    runs = [record.dagster_run for record in records]
    start = next((i for i, run in enumerate(runs) if run.run_id == run_id), 0)
    streak = 0
    for run in runs[start:]:
        if run.tags.get(FAILURE_KIND_TAG) == CONFIG_FAILURE:
            continue  # a rejected run config says nothing about the job's health
        if run.status != dg.DagsterRunStatus.FAILURE:
            break
        streak += 1
    return streak


# Root causes that mean the run config was wrong, not the job: a Config class's rules
# (pydantic), Dagster's own config check, or a check only the run could make.
CONFIG_ERROR_CLASSES = {"ValidationError", "DagsterInvalidConfigError", "RunConfigError"}


def innermost(error):
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error


def is_config_failure(context: dg.RunFailureSensorContext) -> bool:
    if context.dagster_run.tags.get(FAILURE_KIND_TAG) == CONFIG_FAILURE:
        return True
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error
        if error is not None and innermost(error).cls_name in CONFIG_ERROR_CLASSES:
            return True
        if error is not None and error.message.startswith("run config error:"):
            return True
    return False


def root_cause(error) -> str:
    """The innermost error's message: Dagster wraps the op's own exception."""
    return innermost(error).message.strip()


def failure_text(context: dg.RunFailureSensorContext) -> str:
    run = context.dagster_run
    lines = [f"job: {run.job_name}", f"run id: {run.run_id}"]
    if run.tags.get("dagster/partition"):
        lines.append(f"partition: {run.tags['dagster/partition']}")
    errors = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error
        errors.append(f"step {event.step_key}: {root_cause(error) if error else 'failed'}")
    if not errors:
        errors.append(context.failure_event.message or "run failed")
    lines.append("error: " + "\n".join(errors)[:3000])
    return "\n".join(lines)


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    monitor_all_code_locations=True,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts every failed run (a run rejected for its config as a config error); a "
    "critical alert when a job fails 3 times in a row.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: Alerts):
    run = context.dagster_run
    text = failure_text(context)
    if is_config_failure(context):
        # The job did not fail: someone launched it with bad config. Said so, never a streak.
        context.instance.add_run_tags(run.run_id, {FAILURE_KIND_TAG: CONFIG_FAILURE})
        alerts.send(f"{run.job_name}: run config rejected", text, "warning")
        return
    alerts.send(f"{run.job_name} failed", text, "error")
    streak = failure_streak(context.instance, run.job_name, run.run_id)
    if streak == CRITICAL_STREAK:  # once per streak, not again at the 4th, 5th… failure
        alerts.send(f"{run.job_name} failed {streak} times in a row", text, "critical")


# --- email backlog ----------------------------------------------------------------------------


def _state(cursor: str | None) -> dict:
    try:
        return json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        return {}


def email_backlog(context: dg.SensorEvaluationContext, database: Database, alerts: Alerts):
    state = _state(context.cursor)
    now = utcnow()
    due = count_due(database.engine, now, cap=BACKLOG_THRESHOLD + 1)
    over = due > BACKLOG_THRESHOLD
    if over and not state.get("over"):
        total = count_due(database.engine, now)
        alerts.send(
            "Email backlog",
            f"{total:,} notification email batches are due (threshold {BACKLOG_THRESHOLD:,}): "
            "is email_queue running, and is the mail server reachable?",
            "error",
        )
        context.update_cursor(json.dumps({"over": True, "since": now.isoformat()}))
        return dg.SkipReason(f"alerted: {total} batches due")
    if not over and state.get("over"):
        alerts.send(
            "Email backlog cleared", f"{due} batches due, under {BACKLOG_THRESHOLD:,} again", "info"
        )
        context.update_cursor(json.dumps({"over": False}))
    return dg.SkipReason(f"{due if not over else f'over {BACKLOG_THRESHOLD}'} batches due")


# --- stalled cleanups -------------------------------------------------------------------------


def zero_change_days(
    instance: dg.DagsterInstance, job_name: str, lookback: int = STALL_LOOKBACK_RUNS
) -> int:
    """Distinct UTC days of the job's latest successful runs that all changed 0 rows
    (walking back from the newest until a run changed something)."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=lookback
    )
    days = set()
    for record in records:
        changed = run_rows_changed(instance, record.dagster_run.run_id)
        if changed is None:
            continue
        if changed > 0:
            break
        started = record.start_time or record.create_timestamp.timestamp()
        days.add(datetime.fromtimestamp(started, UTC).date())
    return len(days)


def stalled_cleanups(context: dg.SensorEvaluationContext, alerts: Alerts):
    alerted = set(_state(context.cursor).get("alerted", []))
    stalled = []
    for job_name in CLEANUP_JOBS:
        days = zero_change_days(context.instance, job_name)
        if days < STALL_DAYS:
            alerted.discard(job_name)  # it changed rows again: a new stall alerts again
            continue
        stalled.append(job_name)
        if job_name not in alerted:
            alerts.send(
                f"{job_name} changed nothing for {days} days",
                f"Every successful run of {job_name} on the last {days} days it ran changed 0 rows. "
                "Check its rules and inputs: a cleanup that never finds work may have a broken rule.",
                "warning",
            )
            alerted.add(job_name)
    context.update_cursor(json.dumps({"alerted": sorted(alerted)}))
    return dg.SkipReason(f"stalled: {', '.join(stalled) or 'none'}")


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """Failed runs always alert; the backlog and stall alerts follow their group's switch."""
    return [
        run_failure_alert_sensor,
        dg.sensor(
            name="email_backlog_sensor",
            minimum_interval_seconds=60,
            default_status=default_sensor_status(settings, "email"),
            tags={"ops/group": "email"},  # quiet during a maintenance window over email
            description=f"Alerts once when more than {BACKLOG_THRESHOLD:,} email batches are due.",
        )(email_backlog),
        dg.sensor(
            name="stalled_cleanup_sensor",
            minimum_interval_seconds=3600,
            default_status=default_sensor_status(settings, "cleanup"),
            tags={"ops/group": "cleanup"},
            description=f"Alerts once when a cleanup job changed 0 rows on {STALL_DAYS} consecutive days.",
        )(stalled_cleanups),
    ]
