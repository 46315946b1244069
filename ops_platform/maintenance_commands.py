"""`ops-platform pause` and `resume`: open and end maintenance windows, hold or release the
queued runs at once, optionally wait for the running ones (`--drain`); and the windows'
lines of `ops-platform status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import dagster as dg

from ops_platform.db.engine import utcnow
from ops_platform.maintenance import (
    GROUP_TAG,
    WindowError,
    end_windows,
    engine_for,
    open_window,
    open_windows,
    parse_duration,
    parse_groups,
    parse_time,
    window_bounds,
)
from ops_platform.settings import Settings


# --- draining --------------------------------------------------------------------------------
def runs_in_groups(instance: dg.DagsterInstance, groups: Sequence[str]) -> list:
    """Runs of `groups` queued or in progress (their `ops/group` tag), one query per group;
    not those the window holds in the queue: they wait for its end, not the drain."""
    from ops_platform.held_runs import is_held
    from ops_platform.sensors._common import ACTIVE_STATUSES

    runs = []
    for group in groups:
        runs.extend(
            instance.get_runs(
                dg.RunsFilter(statuses=ACTIVE_STATUSES, tags={GROUP_TAG: group}), limit=500
            )
        )
    return [run for run in runs if not is_held(run)]


def drain(instance, groups: Sequence[str], timeout_s: float, poll_s: float = 5.0, say=print):
    """Wait (at most `timeout_s`) until no run of `groups` is queued or running; returns the
    runs still there (empty: drained). Runs are never stopped: they finish by themselves."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        runs = runs_in_groups(instance, groups)
        if not runs or time.monotonic() >= deadline:
            return runs
        say(
            f"waiting for {len(runs)} run(s): "
            + ", ".join(f"{r.job_name} {r.run_id[:8]} ({r.status.value})" for r in runs[:10])
        )
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


# --- the command line ------------------------------------------------------------------------
def sync_queue(settings: Settings):
    """Hold or release the queued runs now; None when the instance cannot be reached."""
    import sys

    from ops_platform.held_runs import apply_windows_to_queue
    from ops_platform.status import instance_from_env

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    try:
        with instance_from_env() as instance:
            engine = engine_for(settings.app_database_url)
            return apply_windows_to_queue(instance, engine, utcnow(), warn)
    except Exception as error:  # the window is written: the sensor applies it within a minute
        print(
            f"the run queue was not reached ({str(error).splitlines()[0]}); "
            "maintenance_window_alert_sensor holds and releases queued runs within a minute",
            file=sys.stderr,
        )
        return None


def print_queue_change(change) -> None:
    if change is None:
        return
    if change.held:
        print(
            f"held {len(change.held)} queued run(s) in the run queue (tag ops/held=maintenance); "
            "they run when the window ends: "
            + ", ".join(f"{r.job_name} {r.run_id[:8]}" for r in change.held[:10])
        )
    if change.released:
        print(f"released {len(change.released)} held run(s) to the run queue")


def print_pause(settings: Settings, args) -> int:
    """`ops-platform pause`."""
    import sys

    from ops_platform.dead_items import who_am_i

    now = utcnow()
    try:
        groups = None if args.all else parse_groups(args.groups)
        starts, ends = window_bounds(
            now,
            settings.maintenance_max_hours,
            starts=parse_time(args.starts) if args.starts else None,
            until=parse_time(args.until) if args.until else None,
            duration=parse_duration(args.duration) if args.duration else None,
        )
        window = open_window(
            engine_for(settings.app_database_url),
            groups=groups,
            reason=args.reason,
            by=args.by or who_am_i(),
            starts_at=starts,
            ends_at=ends,
            now=now,
        )
    except WindowError as error:
        print(f"ops-platform pause: {error}", file=sys.stderr)
        return 2
    verb = "planned" if window.planned(now) else "opened"
    print(f"{verb} {window.describe()}")
    print("schedules and sensors of these groups skip their ticks until it ends; their on/off")
    print("state is unchanged; their queued runs wait in the run queue (runs launched by hand")
    print("in the window run). `ops-platform resume` ends it earlier.")
    if window.active(now):
        print_queue_change(sync_queue(settings))
    if args.drain and window.active(now):
        from ops_platform.status import instance_from_env

        with instance_from_env() as instance:
            left = drain(instance, window.groups, args.drain_timeout)
        if left:
            print(
                f"still running after {args.drain_timeout:.0f}s: "
                + ", ".join(f"{r.job_name} {r.run_id} ({r.status.value})" for r in left),
                file=sys.stderr,
            )
            return 1
        print(f"drained: no run of {window.scope} is running or about to start (held runs wait)")
    return 0


def print_resume(settings: Settings, args) -> int:
    """`ops-platform resume`."""
    import sys

    from ops_platform.dead_items import who_am_i

    try:
        groups = parse_groups(args.groups) if args.groups else None
    except WindowError as error:
        print(f"ops-platform resume: {error}", file=sys.stderr)
        return 2
    ended, reopened = end_windows(
        engine_for(settings.app_database_url), groups=groups, by=args.by or who_am_i(), now=utcnow()
    )
    change = sync_queue(settings)  # also runs held by a window that ended by itself
    if not ended:
        print(
            "no active or planned maintenance window over " + (", ".join(groups or ["any group"]))
        )
        print_queue_change(change)
        return 0
    for window in ended:
        print(f"ended {window.describe()}")
    for window in reopened:
        print(f"still paused: {window.describe()}")
    print_queue_change(change)
    print("schedules and sensors tick again; catch-up sensors request the partitions missed.")
    return 0


def window_lines(engine, now: datetime) -> list[str]:
    """`ops-platform status`'s first lines: the active and planned windows."""
    lines = []
    for window in open_windows(engine, now):
        state = "ACTIVE" if window.active(now) else "PLANNED"
        lines.append(f"MAINTENANCE {state} {window.describe()}")
    return lines
