"""`missed_run_alert_sensor`: a schedule that is on but whose job has had no successful run
within its window (twice its period plus its max runtime, see schedules/overdue.py) alerts
once per incident through the `alerts` resource, and once more, resolved, when the job
succeeds again (or the schedule is stopped). Open incidents live in the sensor cursor.

The reports that wait for their inputs have no schedule to miss: a report partition not
produced by its due time fails its freshness check, and `freshness_alert_sensor` alerts,
naming the inputs it waits for.

It runs in the daemon, so it cannot report the daemon's own death: the Prometheus rule
`OpsDaemonDown` and `ops-platform status --check` (a cron or a probe) cover that.
"""

import json
from datetime import datetime, timedelta

import dagster as dg

from ops_platform.resources.alerts import Alerts
from ops_platform.resources.database import Database
from ops_platform.schedules import overdue as overdue_rules
from ops_platform.schedules.catalog import SCHEDULES
from ops_platform.schedules.overdue import last_success_time, overdue_schedules
from ops_platform.sensors._common import alert_sensor, open_incidents

# Alert severity by the job's tier.
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "warning"}
_ROWS = {row.name: row for row in SCHEDULES}


def _resolution(instance: dg.DagsterInstance, job: str, since: str, now: datetime) -> str:
    success = last_success_time(instance, job)
    if success is not None and success > datetime.fromisoformat(since):
        late = (success - datetime.fromisoformat(since)).total_seconds() / 60
        return f"{job} succeeded again at {success:%Y-%m-%d %H:%M:%S} UTC ({late:.0f} min after the last one)."
    return f"{job} is no longer watched: its schedule was stopped ({now:%Y-%m-%d %H:%M} UTC)."


def _held_by_windows(database: Database, overdue: dict, now: datetime) -> set[str]:
    """Overdue schedules late because of a maintenance window over their group: one that
    overlapped the time they have been overdue for, and ended less than their missed-run
    window ago (after that, a job still not run alerts). Their open incidents stay open."""
    from ops_platform.maintenance import open_windows

    if not overdue:
        return set()
    try:
        windows = open_windows(database.engine, now, recent=timedelta(days=32))
    except Exception:  # windows unreadable: alert as without them
        return set()
    held = set()
    for name, o in overdue.items():
        row = _ROWS[name]
        grace = timedelta(seconds=overdue_rules.missed_run_window_s(row))
        for window in windows:
            end = window.ended_at or window.ends_at
            if (
                window.covers(row.group)
                and window.starts_at <= now
                and end >= o.since
                and now <= end + grace
            ):
                held.add(name)
    return held


@alert_sensor(
    name="missed_run_alert_sensor",
    description="Alerts once when a schedule that is on has no successful run within twice its "
    "period plus its max runtime, and again when it recovers.",
)
def missed_run_alert_sensor(
    context: dg.SensorEvaluationContext, alerts: Alerts, database: Database
):
    from ops_platform.status import schedules_on

    now = overdue_rules.check_now()
    incidents = open_incidents(context.cursor)
    on = schedules_on(context.instance, context.repository_def.schedule_defs)
    overdue = {
        o.schedule: o
        for o in overdue_schedules(
            context.instance, {name for name, is_on in on.items() if is_on}, now
        )
    }
    held = _held_by_windows(database, overdue, now)
    for name in held:
        overdue.pop(name)
    for name, o in overdue.items():
        if name in incidents:
            continue  # already alerted for this incident
        tier = _ROWS[name].tier
        alerts.send(
            f"{o.job} missed its scheduled runs",
            f"{o.describe(now)}.\nIs dagster-daemon running, the code server loading, the "
            "schedule ticking? `ops-platform status --check` lists every overdue job.",
            SEVERITY[tier],
        )
        incidents[name] = {"job": o.job, "since": o.since.isoformat(), "at": now.isoformat()}
        context.update_cursor(json.dumps({"open": incidents}))
    for name in sorted(set(incidents) - set(overdue)):
        incident = incidents.pop(name)
        alerts.send(
            f"{incident['job']} recovered",
            _resolution(context.instance, incident["job"], incident["since"], now),
            "info",
        )
        context.update_cursor(json.dumps({"open": incidents}))
    quiet = f"; quiet during a maintenance window: {', '.join(sorted(held))}" if held else ""
    return dg.SkipReason(f"overdue: {', '.join(sorted(overdue)) or 'none'}{quiet}")


def build_sensors(settings) -> list[dg.SensorDefinition]:
    """Always on: it watches only the schedules that are on, whatever their group."""
    return [missed_run_alert_sensor]
