"""Turn the schedule table into Dagster schedules and asset jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Mapping

import dagster as dg

from ops_platform.schedules.catalog import SCHEDULES, ScheduleRow, job_tags, row_for
from ops_platform.settings import Settings


def default_status(settings: Settings, group: str) -> dg.DefaultScheduleStatus:
    """`OPS_ENABLE_<GROUP>=false` makes the group's schedules default to stopped."""
    return dg.DefaultScheduleStatus.RUNNING if settings.group_enabled(group) else dg.DefaultScheduleStatus.STOPPED


def default_sensor_status(settings: Settings, group: str) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if settings.group_enabled(group) else dg.DefaultSensorStatus.STOPPED


def asset_job(asset: dg.AssetsDefinition | dg.AssetSpec, asset_name: str) -> dg.UnresolvedAssetJobDefinition:
    """The job that materializes one scheduled asset, tagged from its table row."""
    partitions_def = getattr(asset, "partitions_def", None)
    return dg.define_asset_job(
        name=row_for(asset_name).job_name,
        selection=dg.AssetSelection.assets(dg.AssetKey(asset_name)),
        tags=job_tags(asset_name),
        partitions_def=partitions_def,
        description=f"Materializes {asset_name} on its schedule.",
    )


def last_partition_keys(
    partitions_def: dg.PartitionsDefinition, at: datetime
) -> list[str | dg.MultiPartitionKey]:
    """Partition keys a tick at `at` should materialize: the latest complete period
    (for every static key of a time × static multi-partition)."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        time_dim = partitions_def.time_window_dimension
        static_dim = next(d for d in partitions_def.partitions_defs if d.name != time_dim.name)
        time_key = time_dim.partitions_def.get_last_partition_key(current_time=at)
        if time_key is None:
            return []
        return [
            dg.MultiPartitionKey({time_dim.name: time_key, static_dim.name: static_key})
            for static_key in static_dim.partitions_def.get_partition_keys()
        ]
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        key = partitions_def.get_last_partition_key(current_time=at)
        return [key] if key else []
    raise TypeError(f"unsupported partitions definition {type(partitions_def).__name__}")


def _schedule_for_row(row: ScheduleRow, job, partitions_def, settings: Settings) -> dg.ScheduleDefinition:
    common = dict(
        name=row.name,
        cron_schedule=row.cron,
        execution_timezone=row.timezone,
        job=job,
        default_status=default_status(settings, row.group),
        description=row.description or f"{row.target}: {row.cron} ({row.timezone}), tier {row.tier}",
    )
    if partitions_def is None:
        return dg.ScheduleDefinition(run_config=dict(row.run_config), **common)

    def execution_fn(context: dg.ScheduleEvaluationContext):
        at = context.scheduled_execution_time
        for key in last_partition_keys(partitions_def, at):
            # One run per partition; the run key makes a re-evaluated tick a no-op.
            yield dg.RunRequest(run_key=f"{row.name}:{key}", partition_key=key, run_config=dict(row.run_config))

    return dg.ScheduleDefinition(execution_fn=execution_fn, **common)


def build_schedules(
    op_jobs: Mapping[str, dg.JobDefinition],
    assets: Mapping[str, dg.AssetsDefinition],
    settings: Settings,
) -> tuple[list, list[dg.ScheduleDefinition]]:
    """Asset jobs and schedules for every table row whose job or asset exists."""
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
        if row.cron is not None:
            schedules.append(_schedule_for_row(row, job, partitions_def, settings))
    return list(asset_jobs.values()), schedules


def scheduled_targets() -> Iterable[str]:
    return {row.target for row in SCHEDULES}
