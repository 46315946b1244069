"""`maintenance_window_alert_sensor`: one alert when a maintenance window starts (planned ones
included), one when it ends (resumed, or its end reached), and one when a window is still
active past the maximum length (OPS_MAINTENANCE_MAX_HOURS): a pause nobody resumed. The
windows already announced live in the cursor. Every tick it also holds the queued runs of the
paused groups and releases those of ended windows (ops_platform.held_runs), so a window that
starts or ends by itself applies to the run queue within a minute."""

import json
from datetime import timedelta

import dagster as dg

from ops_platform import held_runs, maintenance
from ops_platform.db.engine import utcnow
from ops_platform.maintenance import MaintenancePolicy
from ops_platform.resources.alerts import Alerts
from ops_platform.resources.database import Database
from ops_platform.sensors._common import alert_sensor


def _cursor(cursor: str | None) -> tuple[set[int], set[int]]:
    try:
        state = json.loads(cursor) if cursor else {}
        return set(state.get("active", [])), set(state.get("overlong", []))
    except (ValueError, TypeError, AttributeError):
        return set(), set()


@alert_sensor(
    name="maintenance_window_alert_sensor",
    description="Alerts once when a maintenance window starts, once when it ends, and once "
    "when one is still active past the maximum length.",
)
def maintenance_window_alert_sensor(
    context: dg.SensorEvaluationContext,
    alerts: Alerts,
    database: Database,
    maintenance_policy: MaintenancePolicy,
):
    now = utcnow()
    announced, overlong = _cursor(context.cursor)
    active = {w.id: w for w in maintenance.active_windows(database.engine, now)}
    for window in active.values():
        if window.id not in announced:
            alerts.send(
                f"maintenance window #{window.id} started ({window.scope})",
                f"{window.describe()}.\nSchedules and sensors of these groups skip their ticks "
                "and their queued runs wait in the run queue; `ops-platform resume` ends it "
                "earlier.",
                "info",
            )
        limit = timedelta(hours=maintenance_policy.max_hours)
        if window.id not in overlong and now - window.starts_at > limit:
            alerts.send(
                f"maintenance window #{window.id} still active after {maintenance_policy.max_hours} h",
                f"{window.describe()}.\nIs it forgotten? `ops-platform resume` ends it; the "
                "catch-up then requests every partition missed.",
                "warning",
            )
            overlong.add(window.id)
    gone = maintenance.windows_by_id(database.engine, announced - set(active))
    for window in gone.values():
        how = (
            f"resumed at {window.ended_at:%Y-%m-%d %H:%M} UTC"
            if window.ended_at
            else f"reached its end at {window.ends_at:%Y-%m-%d %H:%M} UTC"
        )
        alerts.send(
            f"maintenance window #{window.id} ended ({window.scope})",
            f"{window.describe()}; {how}. Schedules and sensors tick again; the catch-up "
            "sensors request the partitions that fell due meanwhile; held runs are released.",
            "info",
        )
    context.update_cursor(
        json.dumps({"active": sorted(active), "overlong": sorted(overlong & set(active))})
    )
    # Also a window that started or ended by itself: the run queue follows within a minute.
    change = held_runs.apply_windows_to_queue(
        context.instance, database.engine, now, context.log.warning
    )
    return dg.SkipReason(
        f"active windows: {', '.join(f'#{i}' for i in sorted(active)) or 'none'}; "
        + change.summary()
    )


def build_sensors(settings) -> list[dg.SensorDefinition]:
    """Always on, whatever the groups: it is the alert about the switch itself."""
    return [maintenance_window_alert_sensor]
