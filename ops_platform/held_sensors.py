"""Schedules and sensors of a group skip their ticks while a maintenance window is over it.

Each sensor of a group is wrapped so that its tick, while `window_over` finds a window over
the group, is skipped with the window's reason and end; its cursor is kept. The schedules do
the same in ops_platform/schedules/build.py. Which group a definition belongs to is its
schedule-table row, its `ops/group` tag, its name or the job it launches (`group_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ops_platform.maintenance import GROUP_TAG, window_over
from ops_platform.schedules.catalog import SCHEDULES
from ops_platform.settings import GROUPS, Settings

_ROW_BY_NAME = {row.name: row for row in SCHEDULES}
_GROUP_BY_JOB = {row.job_name: row.group for row in SCHEDULES}


def _sensor_job_names(sensor: dg.SensorDefinition) -> list[str]:
    return [target.job_name for target in sensor.targets]


def group_of(definition: dg.ScheduleDefinition | dg.SensorDefinition) -> str | None:
    """The group a schedule or sensor belongs to: its schedule-table row, its `ops/group`
    tag, its name (`<group>_freshness_sensor`), or the row of the job it launches. None: it belongs to no group (an alert on every
    job), and windows never hold it."""
    row = _ROW_BY_NAME.get(definition.name)
    if row is not None:
        return row.group
    if definition.tags.get(GROUP_TAG):
        return definition.tags[GROUP_TAG]
    # `<group>_freshness_sensor` (Dagster's freshness-check sensors take no sensor tags).
    prefix, _, suffix = definition.name.partition("_freshness_")
    if suffix == "sensor" and prefix in GROUPS:
        return prefix
    if isinstance(definition, dg.ScheduleDefinition):
        return _GROUP_BY_JOB.get(definition.job_name)
    groups = {_GROUP_BY_JOB.get(name) for name in _sensor_job_names(definition)} - {None}
    return groups.pop() if len(groups) == 1 else None


def held_sensor(sensor: dg.SensorDefinition, group: str, settings: Settings):
    """`sensor`, skipping its ticks while a window is over `group`; its cursor is kept."""
    from dagster._core.definitions.sensor_definition import (
        resolve_jobs_from_targets_for_with_attributes,
    )

    def evaluate(context: dg.SensorEvaluationContext):
        window = window_over(settings, group)
        if window is not None:
            return dg.SkipReason(window.skip_message())
        return sensor(context)

    job_name, job, jobs = resolve_jobs_from_targets_for_with_attributes(sensor, None)
    return dg.SensorDefinition(
        name=sensor.name,
        evaluation_fn=evaluate,
        minimum_interval_seconds=sensor.minimum_interval_seconds,
        description=sensor.description,
        job_name=job_name,
        job=job,
        jobs=jobs,
        default_status=sensor.default_status,
        asset_selection=sensor.asset_selection,
        required_resource_keys=set(sensor.required_resource_keys) or None,
        tags=sensor.tags,
        metadata=sensor.metadata,
    )


def hold_sensors_in_windows(
    sensors: Sequence[dg.SensorDefinition], settings: Settings
) -> list[dg.SensorDefinition]:
    """Every sensor of a group, held while a window is over that group. Sensors of other
    kinds (run-status alerts on every job, automation-condition and freshness sensors, which
    Dagster evaluates itself) are left as they are: the run queue holds the runs an
    automation-condition sensor submits in a window (ops_platform.run_coordinator)."""
    held = []
    for sensor in sensors:
        group = group_of(sensor) if type(sensor) is dg.SensorDefinition else None
        held.append(sensor if group is None else held_sensor(sensor, group, settings))
    return held
