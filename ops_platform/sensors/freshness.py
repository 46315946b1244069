"""`freshness_alert_sensor`: an asset whose `freshness_check` fails (overdue by its
schedule-table row, see schedules/freshness.py) alerts once per incident through the
`alerts` resource, and once more, resolved, when the check passes again (or is no longer
watched). It reads the latest completed evaluation of each check from the instance, the
ones the `<group>_freshness_sensor`s and the asset's own runs record; open incidents live
in the sensor cursor.

- Only the checks whose `<group>_freshness_sensor` is on are watched: a stopped group is not
  judged on an old evaluation.
- A report that waits for its inputs (`waits_for_inputs`) is overdue when the partition of
  the period that ended is not produced by its due time (its cron plus its max runtime);
  its alert names the input partitions it still waits for (not materialized, running,
  failed), or says that they are all there.
- A group inside a maintenance window, or whose window ended less than its settling time
  ago (the time its next tick or catch-up run needs), neither alerts nor recovers: the
  incident waits, and the skip message names the assets held.

Freshness checks warn (they do not fail their run), so without this sensor an overdue asset
shows in the UI only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_factories.utils import (
    LATEST_CRON_TICK_METADATA_KEY,
)

from ops_platform.resources.alerts import Alerts
from ops_platform.resources.database import Database
from ops_platform.schedules import overdue as overdue_rules
from ops_platform.schedules.build import CATCHUP_INTERVAL_S, is_time_partitioned
from ops_platform.schedules.catalog import ScheduleRow
from ops_platform.schedules.freshness import cron_period, scheduled_asset_rows
from ops_platform.sensors._common import alert_sensor, open_incidents
from ops_platform.sensors.missed_runs import SEVERITY

CHECK_NAME = "freshness_check"  # the name Dagster's freshness-check factories give


@dataclass(frozen=True)
class Evaluation:
    """The latest completed evaluation of one asset's freshness check."""

    asset: str
    row: ScheduleRow
    passed: bool
    description: str
    at: datetime
    deadline: datetime | None  # the due time a time-partition check judged against


def freshness_check_key(asset: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(asset), CHECK_NAME)


def watched_rows(
    instance: dg.DagsterInstance, repo: dg.RepositoryDefinition
) -> dict[str, ScheduleRow]:
    """Scheduled assets (by name) with a freshness check whose group's sensor is on."""
    from ops_platform.status import sensors_on

    on = sensors_on(instance, repo.sensor_defs)
    check_keys = repo.asset_graph.asset_check_keys
    return {
        asset: row
        for asset, row in scheduled_asset_rows().items()
        if on.get(f"{row.group}_freshness_sensor") and freshness_check_key(asset) in check_keys
    }


def latest_evaluations(
    instance: dg.DagsterInstance, rows: dict[str, ScheduleRow]
) -> dict[str, Evaluation]:
    """The latest completed evaluation of each asset's freshness check (one query)."""
    keys = [freshness_check_key(asset) for asset in rows]
    summaries = instance.event_log_storage.get_asset_check_summary_records(keys)
    found = {}
    for key in keys:
        record = summaries[key].last_completed_check_execution_record
        if record is None or record.event is None:
            continue  # never evaluated yet
        evaluation = record.event.asset_check_evaluation
        tick = evaluation.metadata.get(LATEST_CRON_TICK_METADATA_KEY)
        asset = key.asset_key.to_user_string()
        found[asset] = Evaluation(
            asset=asset,
            row=rows[asset],
            passed=evaluation.passed,
            description=evaluation.description or "",
            at=datetime.fromtimestamp(record.event.timestamp, UTC),
            deadline=datetime.fromtimestamp(tick.value, UTC) if tick is not None else None,
        )
    return found


# --- what a waiting report waits for ------------------------------------------------------------


def overdue_partition(repo: dg.RepositoryDefinition, evaluation: Evaluation) -> str | None:
    """The partition a time-partition check expected by its deadline (the period that ended)."""
    partitions_def = repo.assets_defs_by_key[dg.AssetKey(evaluation.asset)].partitions_def
    if evaluation.deadline is None or partitions_def is None:
        return None
    with dg.partition_loading_context(effective_dt=evaluation.deadline):
        return partitions_def.get_last_partition_key()


def waiting_for(
    instance: dg.DagsterInstance, repo: dg.RepositoryDefinition, asset: str, partition: str
) -> dict[str, dict[str, list[str]]]:
    """Input partitions of `asset`'s `partition` that are not materialized, by input asset:
    {input: {"missing"|"in progress"|"failed": keys}}. Inputs are the partitioned assets it
    depends on (the app tables are live, never "missing")."""
    graph = repo.asset_graph
    child = dg.AssetKey(asset)
    waiting = {}
    for parent in sorted(graph.get(child).parent_keys, key=lambda key: key.to_user_string()):
        parent_def = repo.assets_defs_by_key.get(parent)
        if parent_def is None or parent_def.partitions_def is None:
            continue
        keys = graph.get_parent_partition_keys_for_child(
            partition, parent, child
        ).partitions_subset.get_partition_keys()
        status = instance.get_status_by_partition(parent, list(keys), parent_def.partitions_def)
        by_state: dict[str, list[str]] = {}
        for key in sorted(keys):
            state = (status or {}).get(key)
            if state != dg.AssetPartitionStatus.MATERIALIZED:
                by_state.setdefault(_STATE_WORDS.get(state, "missing"), []).append(key)
        if by_state:
            waiting[parent.to_user_string()] = by_state
    return waiting


_STATE_WORDS = {
    dg.AssetPartitionStatus.IN_PROGRESS: "in progress",
    dg.AssetPartitionStatus.FAILED: "failed",
}


def inputs_text(asset: str, partition: str, waiting: dict[str, dict[str, list[str]]]) -> str:
    if not waiting:
        return (
            f"Every input partition of {asset} {partition} is materialized: is "
            f"{asset}_automation on, or did its run fail?"
        )
    lines = [f"{asset} {partition} waits for its inputs:"]
    for parent, by_state in waiting.items():
        for state, keys in by_state.items():
            lines.append(f"- {parent} {state}: {', '.join(keys)}")
    return "\n".join(lines)


# --- maintenance windows ------------------------------------------------------------------------


def settling_s(repo: dg.RepositoryDefinition, asset: str, row: ScheduleRow) -> float:
    """How long after a window the asset needs to be fresh again: its next tick (unpartitioned)
    or its catch-up run (partitioned), plus its max runtime."""
    partitions_def = repo.assets_defs_by_key[dg.AssetKey(asset)].partitions_def
    wait = (
        timedelta(seconds=CATCHUP_INTERVAL_S)
        if is_time_partitioned(partitions_def)
        else cron_period(row.cron, row.timezone)
    )
    return wait.total_seconds() + row.max_runtime_s


def held_by_windows(
    database: Database, repo: dg.RepositoryDefinition, rows: dict[str, ScheduleRow], now: datetime
) -> dict[str, int]:
    """Assets among `rows` whose group is in a maintenance window now, or left one less than
    their settling time ago: asset -> window id."""
    from ops_platform.maintenance import open_windows

    if not rows:
        return {}
    try:
        windows = open_windows(database.engine, now, recent=timedelta(days=2))
    except Exception:  # windows unreadable: alert as without them
        return {}
    held = {}
    for asset, row in rows.items():
        settle = timedelta(seconds=settling_s(repo, asset, row))
        for window in windows:
            end = window.ended_at or window.ends_at
            if window.covers(row.group) and window.starts_at <= now <= end + settle:
                held[asset] = window.id
    return held


# --- the sensor -----------------------------------------------------------------------------------


def overdue_text(
    instance: dg.DagsterInstance, repo: dg.RepositoryDefinition, evaluation: Evaluation
) -> str:
    row = evaluation.row
    lines = [
        evaluation.description,
        f"Due by its schedule-table row {row.name}: {row.cron} ({row.timezone}) plus "
        f"{row.max_runtime_s // 60} min; group {row.group}, tier {row.tier}; checked "
        f"{evaluation.at:%Y-%m-%d %H:%M:%S} UTC.",
    ]
    partition = overdue_partition(repo, evaluation) if row.waits_for_inputs else None
    if partition is not None:
        waiting = waiting_for(instance, repo, evaluation.asset, partition)
        lines.append(inputs_text(evaluation.asset, partition, waiting))
    else:
        lines.append(
            "Is its schedule on, are its runs succeeding? `ops-platform status` shows both."
        )
    return "\n".join(lines)


def resolution(asset: str, incident: dict, evaluation: Evaluation | None) -> tuple[str, str]:
    """Title and text closing an incident: the check passed, or it is no longer watched."""
    if evaluation is None or not evaluation.passed:
        return (
            f"{asset} is no longer watched",
            f"{asset}'s freshness check is no longer watched: its group's freshness sensor was "
            f"stopped (overdue since {incident['since'][:19]} UTC).",
        )
    return (
        f"{asset} is fresh again",
        f"{evaluation.description} (checked {evaluation.at:%Y-%m-%d %H:%M:%S} UTC; overdue since "
        f"{incident['since'][:19]} UTC).",
    )


@alert_sensor(
    name="freshness_alert_sensor",
    description="Alerts once when an asset's freshness check fails (a report: naming the inputs "
    "it waits for), and again when it passes; quiet for a group in a maintenance window.",
)
def freshness_alert_sensor(context: dg.SensorEvaluationContext, alerts: Alerts, database: Database):
    now = overdue_rules.check_now()
    repo = context.repository_def
    incidents = open_incidents(context.cursor)
    rows = watched_rows(context.instance, repo)
    evaluations = latest_evaluations(context.instance, rows)
    failing = {asset: e for asset, e in evaluations.items() if not e.passed}
    judged = {asset: rows[asset] for asset in set(failing) | (set(incidents) & set(rows))}
    held = held_by_windows(database, repo, judged, now)

    def save():
        context.update_cursor(json.dumps({"open": incidents}))

    for asset, evaluation in sorted(failing.items()):
        if asset in incidents or asset in held:
            continue
        alerts.send(
            f"{asset} is overdue",
            overdue_text(context.instance, repo, evaluation),
            SEVERITY[evaluation.row.tier],
        )
        incidents[asset] = {"since": evaluation.at.isoformat(), "at": now.isoformat()}
        save()
    for asset in sorted(set(incidents) - set(failing) - set(held)):
        incident = incidents.pop(asset)
        alerts.send(*resolution(asset, incident, evaluations.get(asset)), "info")
        save()
    quiet = (
        "; quiet during a maintenance window: "
        + ", ".join(f"{asset} (window #{window})" for asset, window in sorted(held.items()))
        if held
        else ""
    )
    return dg.SkipReason(f"overdue: {', '.join(sorted(failing)) or 'none'}{quiet}")


def build_sensors(settings) -> list[dg.SensorDefinition]:
    """Always on: it watches only the checks whose group's freshness sensor is on."""
    return [freshness_alert_sensor]
