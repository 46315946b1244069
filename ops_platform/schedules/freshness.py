"""How fresh each scheduled asset must be, from its schedule-table row.

- An asset with time partitions (one time dimension): the partition of the period that
  ended before the last deadline must be materialized, the deadline being the row's cron
  shifted by its max runtime (`0 0 * * *` with 1 h → `0 1 * * *`)
  (`build_time_partition_freshness_checks`).
- Any other asset (unpartitioned, or day × game type): materialized within one period of
  its cron plus its max runtime (`build_last_update_freshness_checks`).

A sensor per group (`<group>_freshness_sensor`, stopped by `OPS_ENABLE_<GROUP>=false`) runs
the checks whenever one could have turned overdue. A failed check is a warning (its run
succeeds): it shows on the asset in the UI, and `freshness_alert_sensor`
(sensors/freshness.py) alerts once per incident and once when the check passes again.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from ops_platform.schedules.build import default_sensor_status
from ops_platform.schedules.catalog import SCHEDULES, ScheduleRow
from ops_platform.settings import Settings

FRESHNESS_INTERVAL_S = 300


def cron_period(cron: str, timezone: str = "UTC") -> timedelta:
    """The longest gap between two consecutive ticks of `cron` over the next year's ticks
    (a month for a monthly cron, whatever the month)."""
    ticks = cron_string_iterator(datetime(2025, 1, 1, tzinfo=UTC).timestamp(), cron, timezone)
    previous, longest = next(ticks), timedelta(0)
    for _ in range(366):
        tick = next(ticks)
        longest = max(longest, tick - previous)
        previous = tick
        if tick.year > 2025:
            break
    return longest


def deadline_cron(cron: str, delay: timedelta) -> str:
    """`cron` with its minute (and hour) moved `delay` later, for the simple crons of the
    table (numeric minute, numeric or `*` hour); any other shape is refused at load."""
    minute, hour, *rest = cron.split()
    if not minute.isdigit() or not (hour.isdigit() or hour == "*"):
        raise ValueError(f"cannot derive a freshness deadline from cron {cron!r}")
    total = int(minute) + int(delay.total_seconds() // 60)
    if hour == "*":
        if total >= 60:
            raise ValueError(f"{cron!r} + {delay} crosses the next hourly tick")
        return " ".join([str(total), hour, *rest])
    new_hour = int(hour) + total // 60
    if new_hour >= 24:
        raise ValueError(f"{cron!r} + {delay} crosses midnight")
    return " ".join([str(total % 60), str(new_hour), *rest])


def _single_time_window(asset: dg.AssetsDefinition) -> bool:
    return isinstance(asset.partitions_def, dg.TimeWindowPartitionsDefinition)


def freshness_checks_for(
    row: ScheduleRow, asset: dg.AssetsDefinition
) -> list[dg.AssetChecksDefinition]:
    runtime = timedelta(seconds=row.max_runtime_s)
    # The factories are marked superseded by freshness policies; they are what the checks
    # and their sensor are built from here, so their notice is not repeated at every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if _single_time_window(asset):
            return list(
                dg.build_time_partition_freshness_checks(
                    assets=[asset.key],
                    deadline_cron=deadline_cron(row.cron, runtime),
                    timezone=row.timezone,
                )
            )
        return list(
            dg.build_last_update_freshness_checks(
                assets=[asset.key],
                lower_bound_delta=cron_period(row.cron, row.timezone) + runtime,
                timezone=row.timezone,
            )
        )


def scheduled_asset_rows() -> dict[str, ScheduleRow]:
    """The row giving each scheduled asset its freshness: its most frequent cron's row."""
    rows: dict[str, ScheduleRow] = {}
    for row in SCHEDULES:
        if row.kind != "asset" or row.cron is None:
            continue
        known = rows.get(row.target)
        if known is None or cron_period(row.cron, row.timezone) < cron_period(
            known.cron, known.timezone
        ):
            rows[row.target] = row
    return rows


def freshness_definitions(
    assets: Mapping[str, dg.AssetsDefinition], settings: Settings
) -> tuple[list[dg.AssetChecksDefinition], list[dg.SensorDefinition]]:
    """Freshness checks of every scheduled asset, and one sensor per group evaluating them."""
    by_group: dict[str, list[dg.AssetChecksDefinition]] = {}
    for name, row in sorted(scheduled_asset_rows().items()):
        if name in assets:
            by_group.setdefault(row.group, []).extend(freshness_checks_for(row, assets[name]))
    sensors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for group, checks in sorted(by_group.items()):
            sensors.append(
                dg.build_sensor_for_freshness_checks(
                    freshness_checks=checks,
                    name=f"{group}_freshness_sensor",
                    minimum_interval_seconds=FRESHNESS_INTERVAL_S,
                    default_status=default_sensor_status(settings, group),
                )
            )
    checks = [check for group_checks in by_group.values() for check in group_checks]
    return checks, sensors
