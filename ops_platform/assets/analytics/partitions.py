"""The analytics calendar: partitions of the analytics assets and the UTC windows they cover,
and `analytics_asset`, the `dg.asset` arguments every analytics asset shares."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ops_platform.assets._decorators import catalog_asset
from ops_platform.settings import partitions_start

ANALYTICS_START = partitions_start()  # OPS_PARTITIONS_START
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=ANALYTICS_START)
# Weeks start on Sunday 00:00 UTC (day_offset=0): the first is the first Sunday from the start.
WEEKLY_PARTITIONS = dg.WeeklyPartitionsDefinition(start_date=ANALYTICS_START, day_offset=0)
MONTHLY_PARTITIONS = dg.MonthlyPartitionsDefinition(start_date=ANALYTICS_START)
HOURLY_PARTITIONS = dg.HourlyPartitionsDefinition(start_date=f"{ANALYTICS_START}-00:00")

OWNERS = ["team:analytics"]


def analytics_asset(name: str, partitions_def: dg.PartitionsDefinition, domain: str, **kwargs):
    """A partitioned asset of the `analytics` group, owned by the analytics team."""
    return catalog_asset(
        name,
        partitions_def,
        group_name="analytics",
        owners=OWNERS,
        tags={"domain": domain},
        **kwargs,
    )


def utc_day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def month_window(month_start: date) -> tuple[datetime, datetime]:
    start = datetime(month_start.year, month_start.month, 1, tzinfo=UTC)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def parse_day(key: str, what: str = "partition") -> date:
    try:
        return date.fromisoformat(key)
    except ValueError:
        raise ValueError(f"{what} {key!r} is not a YYYY-MM-DD day") from None
