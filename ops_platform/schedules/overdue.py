"""Missed runs and a stale daemon: what `status --check`, `missed_run_alert_sensor` and the
Prometheus alert rules all judge by the same numbers.

A schedule that is on expects a successful run of its job within its *window*: twice its
period (the longest gap between two of its ticks) plus the job's maximum runtime, both
from the schedule table. A window that passes without a success — daemon down, code server
broken, every run failing or stuck — makes the schedule overdue. Before the job's first
success the window counts from when the schedule was switched on (its stored state), so a
fresh install is not overdue at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from ops_platform.db.engine import utcnow
from ops_platform.schedules.catalog import SCHEDULES, ScheduleRow

# The daemon writes a heartbeat every 30 s; ten missed ones mean it is gone or wedged.
DAEMON_STALE_AFTER_S = 300
# Enough ticks to see the longest gap of any cron we use (a month, a DST change) cheaply.
_PERIOD_SAMPLE_TICKS = 400
_PERIOD_SAMPLE_SPAN = timedelta(days=366)
_PERIOD_SAMPLE_START = datetime(2025, 1, 1, tzinfo=UTC)


@functools.cache
def schedule_period_s(cron: str, timezone: str = "UTC") -> int:
    """Longest gap between two consecutive ticks of `cron` in `timezone`, in seconds."""
    ticks = cron_string_iterator(_PERIOD_SAMPLE_START.timestamp(), cron, timezone)
    previous = next(ticks)
    longest = 0
    for _ in range(_PERIOD_SAMPLE_TICKS):
        tick = next(ticks)
        longest = max(longest, int(tick.timestamp() - previous.timestamp()))  # real seconds
        if tick - _PERIOD_SAMPLE_START > _PERIOD_SAMPLE_SPAN:
            break
        previous = tick
    return longest


def missed_run_window_s(row: ScheduleRow) -> int:
    """Seconds without a success after which the schedule's job is overdue."""
    return 2 * schedule_period_s(row.cron, row.timezone) + row.max_runtime_s


def scheduled_rows() -> list[ScheduleRow]:
    """Table rows that are real schedules: sensor-driven rows have no cron to miss, and a
    report that waits for its inputs has none (its freshness check judges its partitions)."""
    return [row for row in SCHEDULES if row.cron is not None and not row.waits_for_inputs]


def check_now() -> datetime:
    """The clock of the checks (a function, so tests can move it)."""
    return utcnow()


@dataclass(frozen=True)
class Overdue:
    schedule: str
    job: str
    window_s: int
    since: datetime  # last success, or when the schedule was switched on
    last_success: bool  # False: `since` is the switch-on time, the job never succeeded

    def overdue_by_s(self, now: datetime) -> float:
        return (now - self.since).total_seconds() - self.window_s

    def describe(self, now: datetime) -> str:
        what = "last success" if self.last_success else "never succeeded; on since"
        return (
            f"{self.job} (schedule {self.schedule}): {what} {self.since:%Y-%m-%d %H:%M:%S} UTC, "
            f"window {_span(self.window_s)}, overdue by {_span(self.overdue_by_s(now))}"
        )


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 120:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def last_success_time(instance: dg.DagsterInstance, job_name: str) -> datetime | None:
    """End time of the job's newest successful run, launched by its schedule or by hand
    (two indexed queries)."""
    from ops_platform.status import run_records

    records = run_records(instance, job_name, 1, statuses=[dg.DagsterRunStatus.SUCCESS])
    if not records:
        return None
    record = records[0]
    moment = record.end_time or record.start_time or record.create_timestamp.timestamp()
    return datetime.fromtimestamp(moment, UTC)


def schedule_start_times(instance: dg.DagsterInstance) -> dict[str, datetime]:
    """When each stored schedule state was switched on (by name; the latest if several)."""
    # Dagster's scheduler internals load only where a sensor reads them, not with the definitions.
    from dagster._core.scheduler.instigation import InstigatorType

    started: dict[str, datetime] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE):
        stamp = getattr(state.instigator_data, "start_timestamp", None)
        if stamp:
            moment = datetime.fromtimestamp(stamp, UTC)
            started[state.instigator_name] = max(moment, started.get(state.instigator_name, moment))
    return started


def overdue_schedules(
    instance: dg.DagsterInstance, running: set[str], now: datetime
) -> list[Overdue]:
    """The schedules among `running` (names of schedules that are on) whose job has had no
    success within the window, oldest first."""
    started = schedule_start_times(instance)
    successes: dict[str, datetime | None] = {}
    found = []
    for row in scheduled_rows():
        if row.name not in running:
            continue
        if row.job_name not in successes:
            successes[row.job_name] = last_success_time(instance, row.job_name)
        success = successes[row.job_name]
        since = success or started.get(row.name)
        if since is None:
            continue  # never succeeded, and no record of when it was switched on
        window = missed_run_window_s(row)
        if (now - since).total_seconds() > window:
            found.append(Overdue(row.name, row.job_name, window, since, success is not None))
    return sorted(found, key=lambda o: (o.since, o.schedule))


@dataclass(frozen=True)
class DaemonState:
    daemon: str
    age_s: float | None  # None: no heartbeat ever

    @property
    def stale(self) -> bool:
        return self.age_s is None or self.age_s > DAEMON_STALE_AFTER_S

    def describe(self) -> str:
        if self.age_s is None:
            return f"daemon {self.daemon}: no heartbeat ever (is dagster-daemon running?)"
        return (
            f"daemon {self.daemon}: last heartbeat {_span(self.age_s)} ago "
            f"(stale after {_span(DAEMON_STALE_AFTER_S)})"
        )


def daemon_states(instance: dg.DagsterInstance, now: datetime) -> list[DaemonState]:
    """Heartbeat age of every daemon the instance needs, and of any other that beats."""
    beats = instance.get_daemon_heartbeats()
    names = sorted(set(instance.get_required_daemon_types()) | set(beats))
    return [
        DaemonState(name, now.timestamp() - beats[name].timestamp if name in beats else None)
        for name in names
    ]
