"""Queued runs of a paused group wait in the run queue until its maintenance window ends.

Dagster's run queue (the daemon's QueuedRunCoordinatorDaemon) applies the instance's
`concurrency.runs.tag_concurrency_limits`; every shipped dagster.yaml limits runs tagged
`ops/held=maintenance` to 0 at once, so such a run stays QUEUED (neither failed nor dropped).
While a window is active, the QUEUED runs of its groups get that tag (a run a schedule or
sensor submits during it gets it at submit, ops_platform.run_coordinator); once no window holds
their group the tag becomes `ops/held=released` and the queue launches them, by priority.

A run launched by hand during the window is not held (the operator chose it; its log says a
window is active). `sync_held_runs` applies both rules; `ops-platform pause`/`resume`, the
`maintenance_window` job and `maintenance_window_alert_sensor` (every minute: planned windows
start and windows reach their end without anyone) call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from ops_platform.maintenance import GROUP_TAG, Window, active_windows, paused_groups

HELD_TAG = "ops/held"
HELD = "maintenance"
RELEASED = "released"
# The queue limit that holds them (deploy/dagster.yaml `concurrency.runs`).
HELD_LIMIT = {"key": HELD_TAG, "value": HELD, "limit": 0}
# Never held: it is how an operator ends a window from the UI.
SWITCH_JOB = "maintenance_window"
# Runs a schedule, a sensor or declarative automation requested (Dagster tags the runs of an
# automation-condition sensor with both); any other run was launched by hand.
AUTOMATIC_TAGS = (
    "dagster/schedule_name",
    "dagster/sensor_name",
    "dagster/from_automation_condition",
    "dagster/auto_materialize",
)
PARENT_TAG, RETRY_TAG = "dagster/parent_run_id", "dagster/retry_number"
PAGE = 500


@dataclass(frozen=True)
class QueueChange:
    held: list[dg.DagsterRun]
    released: list[dg.DagsterRun]

    def summary(self) -> str:
        return f"held {len(self.held)} queued run(s), released {len(self.released)}"


def is_held(run: dg.DagsterRun) -> bool:
    return run.tags.get(HELD_TAG) == HELD


def requested_automatically(run: dg.DagsterRun) -> bool:
    """Requested by a schedule, a sensor or declarative automation, not launched by hand. A
    re-execution keeps its parent's tags: it is the operator's unless Dagster's automatic
    retry (`dagster/retry_number`) made it."""
    if PARENT_TAG in run.tags and RETRY_TAG not in run.tags:
        return False
    return any(tag in run.tags for tag in AUTOMATIC_TAGS)


def launched_by_hand_in(run: dg.DagsterRun, created_at: datetime, window: Window) -> bool:
    """Launched after the window started, by no schedule or sensor: the operator's choice."""
    return created_at >= window.starts_at and not requested_automatically(run)


def should_hold(record, window: Window) -> bool:
    run = record.dagster_run
    if run.job_name == SWITCH_JOB or is_held(run):
        return False
    return not launched_by_hand_in(run, record.create_timestamp, window)


def queued_records(instance: dg.DagsterInstance, group: str) -> list:
    """QUEUED runs of `group` (its `ops/group` tag), a page at a time."""
    records, cursor = [], None
    while True:
        page = instance.get_run_records(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED], tags={GROUP_TAG: group}),
            limit=PAGE,
            cursor=cursor,
        )
        records.extend(page)
        if len(page) < PAGE:
            return records
        cursor = page[-1].dagster_run.run_id


def hold_queued_runs(
    instance: dg.DagsterInstance, paused: Mapping[str, Window]
) -> list[dg.DagsterRun]:
    """Tag the QUEUED runs of every paused group that the window must hold."""
    held = []
    for group, window in paused.items():
        for record in queued_records(instance, group):
            if should_hold(record, window):
                instance.add_run_tags(record.dagster_run.run_id, {HELD_TAG: HELD})
                held.append(record.dagster_run)
    return held


def release_held_runs(
    instance: dg.DagsterInstance, paused: Mapping[str, Window]
) -> list[dg.DagsterRun]:
    """Overwrite the tag of every held run whose group no window holds any more (whatever its
    status: one the queue launched in a race keeps no stale `maintenance` tag)."""
    released = []
    for run in instance.get_runs(dg.RunsFilter(tags={HELD_TAG: HELD})):
        if run.tags.get(GROUP_TAG) not in paused:
            instance.add_run_tags(run.run_id, {HELD_TAG: RELEASED})
            released.append(run)
    return released


def sync_held_runs(instance: dg.DagsterInstance, engine, now: datetime) -> QueueChange:
    """Hold the queued runs of the groups active windows cover; release the others."""
    paused = paused_groups(active_windows(engine, now), now)
    return QueueChange(hold_queued_runs(instance, paused), release_held_runs(instance, paused))


def held_lines(instance: dg.DagsterInstance) -> list[str]:
    """`ops-platform status`: the runs a window holds in the queue (none: no line)."""
    runs = instance.get_runs(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED], tags={HELD_TAG: HELD})
    )
    if not runs:
        return []
    names = ", ".join(f"{r.job_name} {r.run_id[:8]}" for r in runs[:10])
    more = f" and {len(runs) - 10} more" if len(runs) > 10 else ""
    return [f"HELD {len(runs)} queued run(s) wait for their window to end: {names}{more}"]


def apply_windows_to_queue(
    instance: dg.DagsterInstance, engine, now: datetime, warn
) -> QueueChange:
    """`sync_held_runs`, warning through `warn` when the instance's queue will not hold them."""
    change = sync_held_runs(instance, engine, now)
    if change.held and not queue_holds_runs(instance):
        warn(MISSING_LIMIT)
    return change


def queue_holds_runs(instance: dg.DagsterInstance) -> bool:
    """Whether the instance's run queue has the limit that holds tagged runs (a dagster.yaml
    of an operator's own may lack it: the runs are tagged, but launched all the same)."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    queue = instance.get_concurrency_config().run_queue_config
    limits = queue.tag_concurrency_limits if queue else []
    return any(dict(limit) == HELD_LIMIT for limit in limits)


MISSING_LIMIT = (
    "this instance's run queue has no `ops/held: maintenance` limit of 0 "
    "(deploy/dagster.yaml concurrency.runs.tag_concurrency_limits): queued runs are tagged "
    "but not held"
)
