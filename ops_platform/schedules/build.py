"""Turn the schedule table into Dagster schedules, asset jobs and catch-up sensors.

Catch-up ("no business day skipped"): Dagster drops the missed ticks of a schedule
(a partitioned one catches up at most 5). For every scheduled asset with time partitions
(daily, weekly, monthly, hourly; alone or × a static dimension such as the game type) a
sensor `<asset>_catchup` finds the partitions its schedule should already have requested
— those of ticks more than `CATCHUP_GRACE` ago, so the schedule launches its own run first,
never the current incomplete period — within `CATCHUP_LOOKBACK`, and requests each one that
was never materialized and is not in progress (queued or running), oldest first, at most
`CATCHUP_MAX_REQUESTS_PER_TICK` per tick. The run key `<asset>:<partition>` makes each
partition requested once, whatever the number of ticks. The sensor's cursor keeps the time
it first ran: partitions due before that (history from before go-live) are not its business
(a backfill by hand), so enabling it never floods the instance or pays a past day twice. A
partition whose run failed is not retried here: the failure alert reports it, and it is
re-run by hand or by run retries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import dagster as dg
from dagster._utils.schedules import reverse_cron_string_iterator

from ops_platform.db.engine import utcnow
from ops_platform.schedules.catalog import SCHEDULES, ScheduleRow, job_tags, row_for
from ops_platform.settings import Settings

CATCHUP_LOOKBACK = timedelta(days=366)  # how far back a tick looks for missed partitions
CATCHUP_MAX_REQUESTS_PER_TICK = 25
CATCHUP_GRACE = timedelta(minutes=10)  # the schedule's own tick gets this long to launch its run
CATCHUP_INTERVAL_S = 120


def default_status(settings: Settings, group: str) -> dg.DefaultScheduleStatus:
    """`OPS_ENABLE_<GROUP>=false` makes the group's schedules default to stopped."""
    return (
        dg.DefaultScheduleStatus.RUNNING
        if settings.group_enabled(group)
        else dg.DefaultScheduleStatus.STOPPED
    )


def default_sensor_status(settings: Settings, group: str) -> dg.DefaultSensorStatus:
    return (
        dg.DefaultSensorStatus.RUNNING
        if settings.group_enabled(group)
        else dg.DefaultSensorStatus.STOPPED
    )


def asset_job(
    asset: dg.AssetsDefinition | dg.AssetSpec, asset_name: str
) -> dg.UnresolvedAssetJobDefinition:
    """The job that materializes one scheduled asset (and its checks), tagged from its table row."""
    # Its partitions are the asset's (Dagster infers them from the selection).
    return dg.define_asset_job(
        name=row_for(asset_name).job_name,
        selection=dg.AssetSelection.assets(dg.AssetKey(asset_name)),
        tags=job_tags(asset_name),
        description=f"Materializes {asset_name} on its schedule.",
    )


# --- partitions -----------------------------------------------------------------------------
def _time_and_static(partitions_def: dg.PartitionsDefinition):
    """(time partitions, time dimension name or None, (static dimension name, static keys))
    of a time-partitioned or a time × static multi-partitioned asset."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        time_dim = partitions_def.time_window_dimension
        static_dim = next(d for d in partitions_def.partitions_defs if d.name != time_dim.name)
        return (
            time_dim.partitions_def,
            time_dim.name,
            (static_dim.name, static_dim.partitions_def.get_partition_keys()),
        )
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return partitions_def, None, (None, ())
    raise TypeError(f"unsupported partitions definition {type(partitions_def).__name__}")


def _with_static_keys(partitions_def, time_keys: Sequence[str]) -> list[str | dg.MultiPartitionKey]:
    """Time keys as partition keys of `partitions_def`: each × every static key, in order."""
    _, time_name, (static_name, static_keys) = _time_and_static(partitions_def)
    if time_name is None:
        return list(time_keys)
    return [
        dg.MultiPartitionKey({time_name: time_key, static_name: static_key})
        for time_key in time_keys
        for static_key in static_keys
    ]


def is_time_partitioned(partitions_def: dg.PartitionsDefinition | None) -> bool:
    """Time windows alone, or × one static dimension (what schedules and catch-up handle)."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return True
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        kinds = [type(d.partitions_def) for d in partitions_def.partitions_defs]
        return (
            sum(issubclass(k, dg.TimeWindowPartitionsDefinition) for k in kinds) == 1
            and sum(issubclass(k, dg.StaticPartitionsDefinition) for k in kinds) == 1
        )
    return False


def last_partition_keys(
    partitions_def: dg.PartitionsDefinition, at: datetime
) -> list[str | dg.MultiPartitionKey]:
    """Partition keys a tick at `at` should materialize: the latest complete period
    (for every static key of a time × static multi-partition)."""
    time_def, _, _ = _time_and_static(partitions_def)
    with dg.partition_loading_context(effective_dt=at):
        time_key = time_def.get_last_partition_key()
    return _with_static_keys(partitions_def, [time_key]) if time_key else []


def _newest_due_window(time_def: dg.TimeWindowPartitionsDefinition, row: ScheduleRow, at: datetime):
    """The newest period the schedule's ticks up to `at` have requested (None: none yet)."""
    last_tick = next(reverse_cron_string_iterator(at.timestamp(), row.cron, row.timezone))
    with dg.partition_loading_context(effective_dt=last_tick):
        return time_def.get_last_partition_window()


def catchup_partition_keys(
    partitions_def: dg.PartitionsDefinition,
    row: ScheduleRow,
    now: datetime,
    watching_since: datetime | None = None,
    lookback: timedelta = CATCHUP_LOOKBACK,
    grace: timedelta = CATCHUP_GRACE,
) -> list[str]:
    """Keys the schedule should have requested by `now - grace`, oldest first: those of the
    last `lookback` that became due after `watching_since`. Never an incomplete period, never
    one due before the sensor started watching."""
    time_def, _, _ = _time_and_static(partitions_def)
    newest = _newest_due_window(time_def, row, now - grace)
    if newest is None:
        return []
    already_due = _newest_due_window(time_def, row, watching_since) if watching_since else None
    if already_due is not None and already_due.start >= newest.start:
        return []
    periods = math.ceil(lookback / (newest.end - newest.start))
    oldest = newest
    for _ in range(periods - 1):
        previous = time_def.get_prev_partition_window(oldest.start)
        if previous is None or (already_due is not None and previous.start <= already_due.start):
            break
        oldest = previous
    with dg.partition_loading_context(effective_dt=newest.end):
        time_keys = time_def.get_partition_keys_in_time_window(
            dg.TimeWindow(oldest.start, newest.end)
        )
    return [str(key) for key in _with_static_keys(partitions_def, time_keys)]


def unmaterialized_partitions(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    keys: Sequence[str],
) -> tuple[list[str], int]:
    """(keys never materialized nor attempted, in the given order; number of failed ones).
    A partition in progress (queued or running: its runs log planned materializations when
    created) or failed is not missing."""
    status = instance.get_status_by_partition(asset_key, list(keys), partitions_def) or {}
    missing = [key for key in keys if status.get(key) is None]
    failed = sum(1 for key in keys if status.get(key) == dg.AssetPartitionStatus.FAILED)
    return missing, failed


# --- schedules and sensors -----------------------------------------------------------------
def _schedule_for_row(
    row: ScheduleRow, job, partitions_def, settings: Settings
) -> dg.ScheduleDefinition:
    from ops_platform.maintenance import window_over

    def execution_fn(context: dg.ScheduleEvaluationContext):
        # A maintenance window over the row's group skips the tick (no backfill of it later:
        # an unpartitioned job runs once at its next tick, the catch-up sensor requests the
        # partitions that fell due meanwhile).
        window = window_over(settings, row.group)
        if window is not None:
            yield dg.SkipReason(window.skip_message())
            return
        if partitions_def is None:
            yield dg.RunRequest(run_config=dict(row.run_config))
            return
        for key in last_partition_keys(partitions_def, context.scheduled_execution_time):
            # One run per partition; the run key makes a re-evaluated tick a no-op.
            yield dg.RunRequest(
                run_key=f"{row.name}:{key}", partition_key=key, run_config=dict(row.run_config)
            )

    return dg.ScheduleDefinition(
        name=row.name,
        cron_schedule=row.cron,
        execution_timezone=row.timezone,
        job=job,
        default_status=default_status(settings, row.group),
        description=row.description
        or f"{row.target}: {row.cron} ({row.timezone}), tier {row.tier}",
        execution_fn=execution_fn,
    )


def catchup_sensor(
    asset_name: str, partitions_def: dg.PartitionsDefinition, settings: Settings, job=None
) -> dg.SensorDefinition:
    """The sensor that materializes every missed partition of `asset_name` exactly once,
    oldest first. `job` (or the job named `<asset>_job`) runs them with the asset's tags."""
    row = row_for(asset_name)
    asset_key = dg.AssetKey(asset_name)

    def evaluate(context: dg.SensorEvaluationContext):
        now = sensor_now()
        # The cursor keeps when the sensor first ran: partitions due before that (history from
        # before go-live, or a sensor reset) are a backfill by hand, not a catch-up.
        watching_since = (
            datetime.fromisoformat(json.loads(context.cursor)["watching_since"])
            if context.cursor
            else now
        )
        cursor = json.dumps({"watching_since": watching_since.isoformat()})
        keys = catchup_partition_keys(
            partitions_def, row, now, watching_since, lookback=CATCHUP_LOOKBACK
        )
        missing, failed = unmaterialized_partitions(
            context.instance, asset_key, partitions_def, keys
        )
        if not missing:
            note = f"; {failed} failed (re-run them by hand)" if failed else ""
            return dg.SensorResult(
                skip_reason=f"all {len(keys)} partitions due since {watching_since:%Y-%m-%d %H:%M} UTC "
                f"(at most {CATCHUP_LOOKBACK.days} days back) are materialized or in progress{note}",
                cursor=cursor,
            )
        batch = missing[:CATCHUP_MAX_REQUESTS_PER_TICK]
        context.log.info(
            f"{asset_name}: {len(missing)} missed partitions, requesting {len(batch)} from {batch[0]}"
        )
        requests = [
            dg.RunRequest(
                run_key=f"{asset_name}:{key}",
                partition_key=key,
                run_config=dict(row.run_config),
                tags={"ops/catchup": "true"},
            )
            for key in batch
        ]
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    target = {"job": job} if job is not None else {"job_name": row.job_name}
    return dg.SensorDefinition(
        name=f"{asset_name}_catchup",
        evaluation_fn=evaluate,
        minimum_interval_seconds=CATCHUP_INTERVAL_S,
        default_status=default_sensor_status(settings, row.group),
        description=(
            f"Materializes every partition of {asset_name} whose schedule tick was missed (daemon "
            f"outage) in the last {CATCHUP_LOOKBACK.days} days, once each, oldest first."
        ),
        **target,
    )


def sensor_now() -> datetime:
    """The catch-up sensors' clock (a function, so tests can move it)."""
    return utcnow()


def catchup_sensors(
    assets: Mapping[str, dg.AssetsDefinition],
    settings: Settings,
    jobs: Mapping[str, object] | None = None,
) -> list[dg.SensorDefinition]:
    """A catch-up sensor for every scheduled asset with time partitions."""
    sensors = []
    for name in sorted(scheduled_targets()):
        asset, row = assets.get(name), row_for(name)
        # A report waiting for its inputs is caught up by its automation condition.
        if asset is None or row.kind != "asset" or row.cron is None or row.waits_for_inputs:
            continue
        partitions_def = getattr(asset, "partitions_def", None)
        if is_time_partitioned(partitions_def):
            sensors.append(
                catchup_sensor(name, partitions_def, settings, job=(jobs or {}).get(name))
            )
    return sensors


def build_schedules(
    op_jobs: Mapping[str, dg.JobDefinition],
    assets: Mapping[str, dg.AssetsDefinition],
    settings: Settings,
) -> tuple[list, list[dg.ScheduleDefinition]]:
    """Asset jobs and schedules for every table row whose job or asset exists (a report that
    waits for its inputs gets its job, for runs by hand, but no schedule)."""
    asset_jobs: dict[str, dg.UnresolvedAssetJobDefinition] = {}
    schedules: list[dg.ScheduleDefinition] = []
    for row in SCHEDULES:
        if row.kind == "asset":
            if row.target not in assets:
                continue
            asset = assets[row.target]
            if row.target not in asset_jobs:
                asset_jobs[row.target] = asset_job(asset, row.target)
            job, partitions_def = asset_jobs[row.target], getattr(asset, "partitions_def", None)
        else:
            if row.target not in op_jobs:
                continue
            job, partitions_def = op_jobs[row.target], op_jobs[row.target].partitions_def
        if row.cron is not None and not row.waits_for_inputs:
            schedules.append(_schedule_for_row(row, job, partitions_def, settings))
    return list(asset_jobs.values()), schedules


def scheduled_targets() -> Iterable[str]:
    return {row.target for row in SCHEDULES}
