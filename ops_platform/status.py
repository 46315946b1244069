"""`ops-platform status`: per job, what the Dagster instance knows about it.

For every job of the code location: the last run (status and time), the success rate over
the last N finished runs, consecutive failures since the last success, whether its
schedules and sensors are on, and the next scheduled tick. Read from the instance of
`DAGSTER_HOME` (the same one the daemon and webserver use) and the code location's
definitions; nothing is written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, InstigatorType
from dagster._utils.schedules import cron_string_iterator

# A run is "finished" once it can no longer change status.
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# A canceled run (e.g. stopped past its dagster/max_runtime) did not do its work either.
NOT_SUCCESS = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class JobStatus:
    job: str
    last_run_id: str | None
    last_run_status: str | None
    last_run_at: str | None  # ISO 8601 UTC: start time, or creation time if not started
    finished_runs: int  # finished runs counted for the success rate (at most N)
    success_rate: float | None  # successes / finished_runs, None without finished runs
    consecutive_failures: int
    last_success_at: str | None  # ISO 8601 UTC end of the newest successful run
    last_run_duration_s: float | None  # of the newest finished run
    schedules: list[str]
    schedule_on: bool | None  # None when the job has no schedule
    next_tick: str | None  # ISO 8601 UTC of the earliest next tick of its running schedules
    sensors: list[str]
    sensor_on: bool | None  # None when no sensor targets the job
    schedules_running: list[str] = field(default_factory=list)  # which of `schedules` are on


def _iso(moment: datetime | float | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _stored_states(
    instance: dg.DagsterInstance, kind: InstigatorType
) -> dict[str, list[InstigatorState]]:
    """Stored schedule or sensor states by name (a name may have a state per location)."""
    states: dict[str, list[InstigatorState]] = {}
    for state in instance.all_instigator_state(instigator_type=kind):
        states.setdefault(state.instigator_name, []).append(state)
    return states


def instigator_is_on(default_running: bool, stored: Sequence[InstigatorState]) -> bool:
    """A stored RUNNING/STOPPED (someone used the UI or CLI) wins over the code's default."""
    explicit = [
        s.status for s in stored if s.status in (InstigatorStatus.RUNNING, InstigatorStatus.STOPPED)
    ]
    if explicit:
        return InstigatorStatus.RUNNING in explicit
    return default_running


def _instigators_on(
    instance: dg.DagsterInstance, definitions: Iterable, kind: InstigatorType
) -> dict[str, bool]:
    """Is each schedule or sensor on (by name): its stored state, else its default status."""
    states = _stored_states(instance, kind)
    return {
        d.name: instigator_is_on(d.default_status.value == "RUNNING", states.get(d.name, []))
        for d in definitions
    }


def schedules_on(
    instance: dg.DagsterInstance, schedules: Iterable[dg.ScheduleDefinition]
) -> dict[str, bool]:
    return _instigators_on(instance, schedules, InstigatorType.SCHEDULE)


def sensors_on(
    instance: dg.DagsterInstance, sensors: Iterable[dg.SensorDefinition]
) -> dict[str, bool]:
    return _instigators_on(instance, sensors, InstigatorType.SENSOR)


def next_tick(schedule: dg.ScheduleDefinition, after: datetime) -> datetime | None:
    crons = (
        [schedule.cron_schedule]
        if isinstance(schedule.cron_schedule, str)
        else list(schedule.cron_schedule)
    )
    ticks = []
    for cron in crons:
        iterator = cron_string_iterator(
            after.timestamp(), cron, schedule.execution_timezone or "UTC"
        )
        tick = next(iterator)
        if tick.timestamp() <= after.timestamp():  # the iterator starts at `after` inclusive
            tick = next(iterator)
        ticks.append(tick)
    return min(ticks) if ticks else None


@dataclass(frozen=True)
class JobHistory:
    """What the instance says about one job's runs, as read (timestamps in epoch seconds)."""

    last_run: dg.RunRecord | None
    finished: int  # finished runs among the last N
    successes: int  # successes among them
    consecutive_failures: int  # failed or canceled runs since the last success
    last_success_end: float | None
    last_run_duration_s: float | None  # of the newest finished run
    last_success_run_id: str | None


# Runs of an asset launched by hand (the UI's Materialize, backfills) run as this implicit
# job; the run queue gives them their asset job's tags, `ops/singleton` among them.
IMPLICIT_ASSET_JOB = "__ASSET_JOB"


def _filters(job_name: str, **filters) -> list[dg.RunsFilter]:
    """Two disjoint filters covering every run of a job: its own, and its asset's by hand."""
    return [
        dg.RunsFilter(job_name=job_name, **filters),
        dg.RunsFilter(job_name=IMPLICIT_ASSET_JOB, tags={"ops/singleton": job_name}, **filters),
    ]


def run_records(instance: dg.DagsterInstance, job_name: str, limit: int, **filters) -> list:
    """The job's newest `limit` runs, whichever way they were launched."""
    records = [
        record
        for runs_filter in _filters(job_name, **filters)
        for record in instance.get_run_records(runs_filter, limit=limit)
    ]
    records.sort(key=lambda record: record.create_timestamp, reverse=True)
    return records[:limit]


def runs_count(instance: dg.DagsterInstance, job_name: str, **filters) -> int:
    return sum(instance.get_runs_count(f) for f in _filters(job_name, **filters))


def job_history(instance: dg.DagsterInstance, job_name: str, last_n: int) -> JobHistory:
    """A few indexed queries per job, whatever the number of runs in the instance."""
    latest = run_records(instance, job_name, 1)
    finished = run_records(instance, job_name, last_n, statuses=FINISHED)
    successes = sum(
        1 for record in finished if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    )
    last_success = run_records(instance, job_name, 1, statuses=[dg.DagsterRunStatus.SUCCESS])
    consecutive_failures = runs_count(
        instance,
        job_name,
        statuses=NOT_SUCCESS,
        created_after=last_success[0].create_timestamp if last_success else None,
    )
    newest_finished = finished[0] if finished else None
    duration = None
    if newest_finished and newest_finished.start_time and newest_finished.end_time:
        duration = newest_finished.end_time - newest_finished.start_time
    success = last_success[0] if last_success else None
    return JobHistory(
        last_run=latest[0] if latest else None,
        finished=len(finished),
        successes=successes,
        consecutive_failures=consecutive_failures,
        last_success_end=(success.end_time or success.start_time) if success else None,
        last_run_duration_s=duration,
        last_success_run_id=success.dagster_run.run_id if success else None,
    )


def _run_history(instance: dg.DagsterInstance, job_name: str, last_n: int) -> dict:
    history = job_history(instance, job_name, last_n)
    record = history.last_run
    return {
        "last_run_id": record.dagster_run.run_id if record else None,
        "last_run_status": record.dagster_run.status.value if record else None,
        "last_run_at": _iso(record.start_time or record.create_timestamp) if record else None,
        "finished_runs": history.finished,
        "success_rate": history.successes / history.finished if history.finished else None,
        "consecutive_failures": history.consecutive_failures,
        "last_success_at": _iso(history.last_success_end),
        "last_run_duration_s": (
            round(history.last_run_duration_s, 3)
            if history.last_run_duration_s is not None
            else None
        ),
    }


def _sensor_targets(sensor: dg.SensorDefinition) -> set[str]:
    try:
        return {target.job_name for target in sensor.targets}
    except Exception:  # a sensor without a job target (run-status sensors, alerting)
        return set()


def collect_status(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    last_n: int = 20,
    now: datetime | None = None,
) -> list[JobStatus]:
    """One `JobStatus` per job of `defs` (Dagster's hidden asset jobs excluded), by name."""
    if last_n < 1:
        raise ValueError(f"--last must be at least 1, got {last_n}")
    now = now or datetime.now(UTC)
    repo = defs.get_repository_def()
    schedule_on = schedules_on(instance, repo.schedule_defs)
    sensor_on_by_name = sensors_on(instance, repo.sensor_defs)

    statuses = []
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        schedules = [s for s in repo.schedule_defs if s.job_name == job.name]
        sensors = [s for s in repo.sensor_defs if job.name in _sensor_targets(s)]
        running = [s for s in schedules if schedule_on[s.name]]
        ticks = [tick for s in running if (tick := next_tick(s, now)) is not None]
        sensor_on = [sensor_on_by_name[s.name] for s in sensors]
        statuses.append(
            JobStatus(
                job=job.name,
                **_run_history(instance, job.name, last_n),
                schedules=sorted(s.name for s in schedules),
                schedule_on=bool(running) if schedules else None,
                next_tick=_iso(min(ticks)) if ticks else None,
                sensors=sorted(s.name for s in sensors),
                sensor_on=any(sensor_on) if sensors else None,
                schedules_running=sorted(s.name for s in running),
            )
        )
    return statuses


def _on_off(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


def _schedules_cell(status: JobStatus) -> str:
    """on/off for one schedule; for several, which are on (their names past the job's)."""
    if len(status.schedules) < 2:
        return _on_off(status.schedule_on)
    short = [name.removeprefix(f"{status.job}_") for name in status.schedules_running]
    return f"{len(short)}/{len(status.schedules)} on" + (f": {', '.join(short)}" if short else "")


def daemon_line(instance: dg.DagsterInstance, now: datetime) -> str:
    """Whether the daemon's heartbeats are fresh: without it no schedule or sensor ticks."""
    from ops_platform.schedules.overdue import daemon_states

    stale = [state.describe() for state in daemon_states(instance, now) if state.stale]
    if not stale:
        return "daemon: heartbeats fresh"
    return "daemon: NOT RUNNING or stale, schedules and sensors do not tick — " + "; ".join(stale)


def format_table(statuses: Iterable[JobStatus], last_n: int) -> str:
    from tabulate import tabulate

    rows = []
    for s in statuses:
        rate = "-" if s.success_rate is None else f"{s.success_rate:.0%} of {s.finished_runs}"
        rows.append(
            [
                s.job,
                s.last_run_status or "never run",
                (s.last_run_at or "").replace("+00:00", "Z"),
                rate,
                s.consecutive_failures,
                _schedules_cell(s),
                (s.next_tick or "").replace("+00:00", "Z"),
                _on_off(s.sensor_on),
            ]
        )
    headers = [
        "job",
        "last run",
        "at (UTC)",
        f"success (last {last_n})",
        "failing",
        "schedule",
        "next tick (UTC)",
        "sensor",
    ]
    return tabulate(rows, headers=headers)


def instance_from_env() -> dg.DagsterInstance:
    """The instance of DAGSTER_HOME; like `ops-platform demo`, `.dagster/` when unset."""
    if not os.environ.get("DAGSTER_HOME"):
        default = Path(".dagster").resolve()
        if not default.is_dir():
            raise RuntimeError(
                "DAGSTER_HOME is not set and ./.dagster does not exist: point DAGSTER_HOME "
                "at the instance's directory (the one holding dagster.yaml)"
            )
        os.environ["DAGSTER_HOME"] = str(default)
    return dg.DagsterInstance.get()


@dataclass(frozen=True)
class HealthCheck:
    overdue: list[str]  # one line per overdue schedule
    stale_daemons: list[str]  # one line per daemon whose heartbeat is stale or missing

    @property
    def ok(self) -> bool:
        return not self.overdue and not self.stale_daemons


def health_check(instance: dg.DagsterInstance, defs: dg.Definitions, now: datetime) -> HealthCheck:
    """Overdue schedules (on, no success within their window) and stale daemons."""
    from ops_platform.schedules.overdue import daemon_states, overdue_schedules

    on = schedules_on(instance, defs.get_repository_def().schedule_defs)
    overdue = overdue_schedules(instance, {name for name, is_on in on.items() if is_on}, now)
    return HealthCheck(
        overdue=[o.describe(now) for o in overdue],
        stale_daemons=[d.describe() for d in daemon_states(instance, now) if d.stale],
    )


def print_check(check: HealthCheck, as_json: bool) -> int:
    """Exit status 1 and one line per problem, or 0 and `ok`."""
    if as_json:
        print(json.dumps({"ok": check.ok, **asdict(check)}, indent=2))
    elif check.ok:
        print("ok: daemon heartbeats fresh, no schedule overdue")
    else:
        for line in check.stale_daemons:
            print(f"STALE {line}")
        for line in check.overdue:
            print(f"OVERDUE {line}")
    return 0 if check.ok else 1


def print_windows(database_url: str | None) -> None:
    """The active and planned maintenance windows, first: they explain every skipped tick."""
    if database_url is None:
        return
    from ops_platform.db.engine import make_engine
    from ops_platform.maintenance_commands import window_lines

    engine = make_engine(database_url)
    try:
        for line in window_lines(engine, datetime.now(UTC)):
            print(line)
    except Exception as error:  # the status of the instance is still worth printing
        print(f"maintenance windows unreadable: {type(error).__name__}", file=sys.stderr)
    finally:
        engine.dispose()


def print_status(
    as_json: bool, last_n: int, check: bool = False, database_url: str | None = None
) -> int:
    if last_n < 1:
        print("ops-platform: --last must be at least 1", file=sys.stderr)
        return 2
    try:
        instance = instance_from_env()
    except RuntimeError as error:
        print(f"ops-platform: {error}", file=sys.stderr)
        return 2
    from ops_platform.definitions import defs

    if check:
        from ops_platform.schedules.overdue import check_now

        with instance:
            return print_check(health_check(instance, defs, check_now()), as_json)
    from ops_platform.held_runs import held_lines

    with instance:
        statuses = collect_status(instance, defs, last_n=last_n)
        daemon = daemon_line(instance, datetime.now(UTC))
        held = held_lines(instance)
    if as_json:
        print(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        print_windows(database_url)
        for line in held:
            print(line)
        print(daemon)
        print(format_table(statuses, last_n))
    return 0
