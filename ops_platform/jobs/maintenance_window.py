"""`maintenance_window`: `ops-platform pause` / `resume` as a job, launched from the UI with its
run config (`action: pause|resume`, groups, reason, until or for, from)."""

from typing import Literal

import dagster as dg
from pydantic import Field

from ops_platform import held_runs, maintenance
from ops_platform.db.engine import utcnow
from ops_platform.jobs._common import job_op, one_op_job
from ops_platform.maintenance import MaintenancePolicy
from ops_platform.resources.database import Database


class MaintenanceWindowConfig(dg.Config):
    action: Literal["pause", "resume"] = Field(description="Open a window, or end windows.")
    groups: list[str] = Field(
        default_factory=list, description="Groups (cleanup, email, ...); empty: every group."
    )
    reason: str = Field(default="", description="Why (required to pause): the skip message.")
    until: str = Field(default="", description="End, ISO 8601 (UTC without a zone).")
    duration: str = Field(default="", description="Or a length: 90m, 2h, 1h30m, 1d.")
    starts: str = Field(default="", description="Start of a planned window (default: now).")
    requested_by: str = Field(default="", description="Who asks (default: the run id).")


def _apply_to_run_queue(context: dg.OpExecutionContext, database: Database, now):
    """At once, not at the alert sensor's next tick: hold or release the queued runs."""
    change = held_runs.apply_windows_to_queue(
        context.instance, database.engine, now, context.log.warning
    )
    context.log.info(change.summary())
    return change


@job_op(
    "maintenance_window",
    "Open a maintenance window or end the windows over some groups.",
    alone=False,
    retried=False,  # a retry after the commit would do it twice
)
def set_maintenance_window(
    context: dg.OpExecutionContext,
    config: MaintenanceWindowConfig,
    database: Database,
    maintenance_policy: MaintenancePolicy,
):
    now = utcnow()
    by = config.requested_by or f"dagster run {context.run_id}"
    try:
        groups = maintenance.parse_groups(config.groups or None)
        if config.action == "resume":
            ended, reopened = maintenance.end_windows(
                database.engine, groups=groups, by=by, now=now
            )
            for window in ended:
                context.log.info(f"ended {window.describe()}")
            for window in reopened:
                context.log.info(f"still paused: {window.describe()}")
            change = _apply_to_run_queue(context, database, now)
            return dg.Output(
                len(ended), metadata={"ended": len(ended), "released": len(change.released)}
            )
        starts, ends = maintenance.window_bounds(
            now,
            maintenance_policy.max_hours,
            starts=maintenance.parse_time(config.starts) if config.starts else None,
            until=maintenance.parse_time(config.until) if config.until else None,
            duration=maintenance.parse_duration(config.duration) if config.duration else None,
        )
        window = maintenance.open_window(
            database.engine,
            groups=groups,
            reason=config.reason,
            by=by,
            starts_at=starts,
            ends_at=ends,
            now=now,
        )
    except maintenance.WindowError as error:
        raise dg.Failure(description=str(error)) from None
    context.log.info(f"opened {window.describe()}")
    change = _apply_to_run_queue(context, database, now)
    return dg.Output(
        window.id,
        metadata={
            "window": window.id,
            "held": len(change.held),
            "groups": window.scope,
            "starts_at": f"{window.starts_at:%Y-%m-%d %H:%M} UTC",
            "ends_at": f"{window.ends_at:%Y-%m-%d %H:%M} UTC",
        },
    )


maintenance_window = one_op_job(
    "maintenance_window", set_maintenance_window, __doc__.splitlines()[0]
)


defs = dg.Definitions(jobs=[maintenance_window])
