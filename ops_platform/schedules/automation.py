"""Reports wait for complete inputs: declarative automation instead of a schedule.

A report (`weekly_trend_report`, `monthly_executive_summary`: rows of the schedule table
with `waits_for_inputs`) has no schedule and no catch-up sensor. Its asset carries the
condition `when_inputs_complete`, and its `<asset>_automation` sensor evaluates it:

- a report partition becomes due when its period ends (a new partition appears), or when
  any input partition it reads is materialized again after the report's last run (a
  backfilled day makes the report stale);
- it is requested only when every input partition it reads is materialized, none is being
  materialized, and every blocking check on them passed; until then it waits, and the UI
  shows per partition which condition holds it back;
- it is requested once per trigger (a request resets the trigger), never while it runs.

Why declarative automation rather than extending the catch-up sensors: the condition is
evaluated per partition against the same lineage (the partition mapping of the asset's
inputs) that the UI draws, so the order of the runs is the lineage; staleness after a
backfill and "one run per trigger" come with it, and the evaluation history explains each
decision. Partitions that were already due when the sensor first ran (history before
go-live) are not requested on its first evaluation, like the catch-up sensors; they run
when their inputs are (re)materialized, or by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from ops_platform.schedules.build import CATCHUP_LOOKBACK, default_sensor_status
from ops_platform.schedules.catalog import SCHEDULES, job_tags, row_for
from ops_platform.settings import Settings

AUTOMATION_INTERVAL_S = 60


def when_inputs_complete(inputs: Sequence[str]) -> dg.AutomationCondition:
    """Materialize a partition once its period has ended or an input partition was updated
    since its last run, and only when every input partition it reads (of the assets named in
    `inputs`) is materialized, not in progress, and passed its blocking checks. Only the
    assets in `inputs` count: the app tables are live and never "missing"."""
    condition = dg.AutomationCondition
    return (
        (
            condition.in_latest_time_window(lookback_delta=CATCHUP_LOOKBACK)
            & (condition.newly_missing() | condition.any_deps_updated()).since_last_handled()
            & ~condition.any_deps_missing()
            & ~condition.any_deps_in_progress()
            & condition.all_deps_blocking_checks_passed()
            & ~condition.in_progress()
        )
        .allow(dg.AssetSelection.assets(*inputs))
        .with_label("every input partition materialized")
    )


def waiting_assets() -> list[str]:
    """Assets of the schedule table that wait for their inputs instead of a schedule."""
    return sorted({row.target for row in SCHEDULES if row.kind == "asset" and row.waits_for_inputs})


def automation_sensor(
    asset_name: str, settings: Settings
) -> dg.AutomationConditionSensorDefinition:
    """The sensor evaluating `asset_name`'s automation condition. Each partition is its own run,
    with the tags of its table row (priority, max runtime, singleton)."""
    row = row_for(asset_name)
    return dg.AutomationConditionSensorDefinition(
        f"{asset_name}_automation",
        target=dg.AssetSelection.assets(asset_name),
        run_tags=job_tags(asset_name),
        default_status=default_sensor_status(settings, row.group),
        minimum_interval_seconds=AUTOMATION_INTERVAL_S,
        emit_backfills=False,
        description=(
            f"Materializes each partition of {asset_name} once every input partition it reads is "
            f"materialized (and again once after an input is re-materialized); due by "
            f"{row.cron} ({row.timezone}) + {row.max_runtime_s // 60} min."
        ),
    )


def automation_sensors(
    assets: Mapping[str, dg.AssetsDefinition], settings: Settings
) -> list[dg.AutomationConditionSensorDefinition]:
    return [automation_sensor(name, settings) for name in waiting_assets() if name in assets]
