"""What a report read: the daily analytics partitions of its period and of the period before
(week over week, month over month), and when each was materialized.

The partition mapping below is the lineage the UI draws and the automation condition waits
on; `report_inputs` reads the same partitions' materializations from the instance, so the
report's metadata and its Markdown say which inputs it used and whether any was missing
(possible only when it is materialized by hand).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ops_platform.assets.analytics.partitions import ANALYTICS_START
from ops_platform.markdown import markdown_table

DAILY_INPUTS = ("daily_course_analytics", "daily_student_analytics")

# A report partition reads the daily partitions of its own period and of the one before it.
THIS_AND_PREVIOUS_PERIOD = dg.TimeWindowPartitionMapping(
    start_offset=-1, allow_nonexistent_upstream_partitions=True
)


def input_deps(*names: str) -> list[dg.AssetDep]:
    return [dg.AssetDep(name, partition_mapping=THIS_AND_PREVIOUS_PERIOD) for name in names]


def days_between(first: date, end: date) -> list[date]:
    """The days of [first, end) that are daily partitions (none before the analytics start)."""
    first = max(first, date.fromisoformat(ANALYTICS_START))
    return [first + timedelta(days=n) for n in range((end - first).days)]


@dataclass(frozen=True)
class ReportInputs:
    """The input partitions of a report and when each was last materialized (None: never)."""

    materialized: dict[str, dict[str, datetime | None]]  # asset -> partition key -> time

    @property
    def missing(self) -> list[tuple[str, str]]:
        return [
            (asset, key)
            for asset, partitions in self.materialized.items()
            for key, at in partitions.items()
            if at is None
        ]

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """One Markdown paragraph: "complete", or the partitions that were missing."""
        count = sum(len(partitions) for partitions in self.materialized.values())
        if self.complete:
            return f"**Inputs: complete** ({count} partitions of {', '.join(self.materialized)})."
        listed = "; ".join(
            f"{asset} {', '.join(key for a, key in self.missing if a == asset)}"
            for asset in self.materialized
            if any(a == asset for a, _ in self.missing)
        )
        return (
            f"**Inputs: incomplete**: {len(self.missing)} of {count} input partitions not "
            f"materialized ({listed}); their figures were computed from the source tables."
        )

    def as_json(self) -> dict:
        return {
            asset: {key: at.isoformat() if at else None for key, at in partitions.items()}
            for asset, partitions in self.materialized.items()
        }

    def metadata(self) -> dict:
        rows = [
            (asset, key, f"{at:%Y-%m-%d %H:%M:%S} UTC" if at else "missing")
            for asset, partitions in self.materialized.items()
            for key, at in partitions.items()
        ]
        return {
            "inputs_complete": self.complete,
            "inputs_missing": ", ".join(f"{a}:{k}" for a, k in self.missing) or "none",
            "input_partitions": dg.MetadataValue.json(self.as_json()),
            "input_table": dg.MetadataValue.md(
                markdown_table(("input", "partition", "materialized at"), rows)
            ),
        }


def report_inputs(
    instance: dg.DagsterInstance, assets: tuple[str, ...], days: list[date]
) -> ReportInputs:
    """The latest materialization time of each day's partition of each asset."""
    keys = [day.isoformat() for day in days]
    materialized: dict[str, dict[str, datetime | None]] = {}
    for asset in assets:
        latest: dict[str, datetime | None] = dict.fromkeys(keys)
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=keys),
            limit=1000,
            ascending=False,
        ).records
        for record in records:  # newest first: the first one seen of a partition is its latest
            if latest.get(record.partition_key) is None:
                latest[record.partition_key] = datetime.fromtimestamp(record.timestamp, UTC)
        materialized[asset] = latest
    return ReportInputs(materialized)
