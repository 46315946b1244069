"""Metric families read from the Dagster instance: each job's finished runs (a ledger of the
run storage's ids, so a scrape reads only recent ones), the schedules' state, the partitions
due and missing, and the daemon heartbeats.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorType
from sqlalchemy import and_, func, or_, select

from ops_platform.metric_families import counter, gauge

RUN_STATUSES = (
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
)
FINISHED_VALUES = tuple(status.value for status in RUN_STATUSES)
SETTLE_LAG = 100
SINGLETON_TAG = "ops/singleton"
UNFINISHED = tuple(s.value for s in dg.DagsterRunStatus if s.value not in FINISHED_VALUES)


def job_names(defs: dg.Definitions) -> list[str]:
    repo = defs.get_repository_def()
    return sorted(job.name for job in repo.get_all_jobs() if not job.name.startswith("__"))


def rows_changed_of_run(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """`rows_changed` an op job's run reported, or the `rows_changed`/`row_count` of an asset
    job's materializations; None when the run says neither."""
    from ops_platform.sensors.alerting import run_rows_changed

    changed = run_rows_changed(instance, run_id)
    if changed is not None:
        return changed
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    total, found = 0, False
    for record in records:
        metadata = record.event_log_entry.asset_materialization.metadata
        entry = metadata.get("rows_changed", metadata.get("row_count"))
        if entry is not None:
            total += int(getattr(entry, "value", entry) or 0)
            found = True
    return total if found else None


@dataclass
class JobRuns:
    """One job's runs, aggregated from the run storage."""

    counts: dict[str, int] = field(default_factory=dict)  # finished runs by status
    last_success_id: int | None = None
    newest_finished_id: int | None = None
    consecutive_failures: int = 0


class RunLedger:
    """Finished runs by (job, status), counted once each as the run storage's ids advance.

    Every run below the *watermark* (the oldest run not finished yet) is finished for good:
    its counts are settled once and kept, so a scrape reads only the runs from the watermark
    on (a short id range), and a count never goes down when old runs are pruned — what a
    Prometheus counter needs. The first scrape of a process settles the whole history."""

    def __init__(self):
        self.watermark = 0
        self.settled: Counter = Counter()  # (job, status) → finished runs below the watermark
        self.settled_newest: dict[tuple[str, str], int] = {}  # (job, status) → newest run id

    def read(self, connection) -> tuple[Counter, dict[tuple[str, str], int]]:
        """(count, newest run id) per (job, status) of every finished run in the storage."""
        from dagster._core.storage.runs.schema import RunsTable as runs

        r = runs.c
        newest_id = connection.execute(select(func.max(r.id))).scalar() or 0
        oldest_unfinished = connection.execute(
            select(func.min(r.id)).where(r.status.in_(UNFINISHED))
        ).scalar()
        # The newest SETTLE_LAG runs stay unsettled too: a run inserted with a lower id may
        # commit after a higher one, and must not land below the watermark uncounted.
        watermark = min(oldest_unfinished or newest_id + 1, newest_id + 1 - SETTLE_LAG)
        if watermark > self.watermark:
            for job, status, count, newest in self._finished(
                connection, r.id >= self.watermark, r.id < watermark
            ):
                self.settled[(job, status)] += count
                self.settled_newest[(job, status)] = max(
                    newest, self.settled_newest.get((job, status), 0)
                )
            self.watermark = watermark
        counts, newest_ids = Counter(self.settled), dict(self.settled_newest)
        for job, status, count, newest in self._finished(connection, r.id >= self.watermark):
            counts[(job, status)] += count
            newest_ids[(job, status)] = max(newest, newest_ids.get((job, status), 0))
        return counts, newest_ids

    @staticmethod
    def _finished(connection, *where):
        from dagster._core.storage.runs.schema import RunsTable as runs
        from dagster._core.storage.runs.schema import RunTagsTable as tags

        r = runs.c
        job = _job_of_run(r, tags.c)
        return connection.execute(
            select(job, r.status, func.count(), func.max(r.id))
            .select_from(runs.outerjoin(tags, _singleton_tag_of_manual_run(r, tags.c)))
            .where(*where, r.status.in_(FINISHED_VALUES))
            .group_by(job, r.status)
        ).all()


def _singleton_tag_of_manual_run(r, t):
    """Join condition: the `ops/singleton` tag of a run launched by hand as the implicit
    asset job (the run queue gives it its asset job's tags)."""
    from ops_platform.status import IMPLICIT_ASSET_JOB

    return and_(t.run_id == r.run_id, t.key == SINGLETON_TAG, r.pipeline_name == IMPLICIT_ASSET_JOB)


def _job_of_run(r, t):
    """The job a run counts for: its own, or for a run by hand its asset job's."""
    return func.coalesce(t.value, r.pipeline_name).label("job")


def run_stats(
    instance: dg.DagsterInstance, jobs: list[str], ledger: RunLedger | None = None
) -> tuple[dict[str, JobRuns], dict]:
    """Per job: finished runs by status, newest success and newest finished run, failures
    since the last success; and the rows of those runs by storage id. A handful of statements
    on the run storage's `runs` table whatever the number of jobs (a per-job API call each
    would be hundreds of round trips per scrape): the ledger's id range, then index ranges."""
    from dagster._core.storage.runs.schema import RunsTable as runs
    from dagster._core.storage.runs.schema import RunTagsTable as tags

    from ops_platform.status import IMPLICIT_ASSET_JOB, NOT_SUCCESS

    ledger = ledger or RunLedger()
    stats = {job: JobRuns() for job in jobs}
    r = runs.c
    with instance.run_storage.connect() as connection:
        counts, newest_ids = ledger.read(connection)
        for (job, status), count in counts.items():
            if job not in stats:
                continue  # a job no longer in the code location
            job_runs = stats[job]
            job_runs.counts[status] = count
            newest = newest_ids[(job, status)]
            if status == dg.DagsterRunStatus.SUCCESS.value:
                job_runs.last_success_id = newest
            job_runs.newest_finished_id = max(newest, job_runs.newest_finished_id or 0)
        # Failures since each job's last success: an index range per job (pipeline_name, id),
        # only the runs after that success.
        since_success = or_(
            *(
                and_(r.pipeline_name == job, r.id > (job_runs.last_success_id or 0))
                for job, job_runs in stats.items()
            )
        )
        not_success = r.status.in_([status.value for status in NOT_SUCCESS])
        for job, count in connection.execute(
            select(r.pipeline_name, func.count())
            .where(since_success, not_success)
            .group_by(r.pipeline_name)
        ):
            stats[job].consecutive_failures = count
        # Failed runs by hand (the implicit asset job) after the oldest of those successes.
        t = tags.c
        manual_since = or_(
            *(
                and_(t.value == job, r.id > (job_runs.last_success_id or 0))
                for job, job_runs in stats.items()
            )
        )
        oldest = min((s.last_success_id or 0) for s in stats.values()) if stats else 0
        for job, count in connection.execute(
            select(t.value, func.count())
            .select_from(runs.join(tags, _singleton_tag_of_manual_run(r, t)))
            .where(r.pipeline_name == IMPLICIT_ASSET_JOB, r.id > oldest, not_success, manual_since)
            .group_by(t.value)
        ):
            stats[job].consecutive_failures += count
        ids = {i for s in stats.values() for i in (s.last_success_id, s.newest_finished_id) if i}
        rows = {
            row.id: row
            for row in connection.execute(
                select(r.id, r.run_id, r.start_time, r.end_time).where(r.id.in_(sorted(ids)))
            )
        }
    return stats, rows


def job_families(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    rows_cache: dict | None = None,
    ledger: RunLedger | None = None,
) -> Iterator:
    """The job families; `rows_cache` keeps each finished run's rows changed by run id (a
    finished run's events never change), so a scrape reads events only of new successes."""
    rows_cache = {} if rows_cache is None else rows_cache
    last_success = gauge(
        "ops_job_last_success_timestamp_seconds",
        "End of the job's newest successful run (Unix time); absent before its first success.",
        ["job"],
    )
    duration = gauge(
        "ops_job_last_run_duration_seconds",
        "Duration of the job's newest finished run.",
        ["job"],
    )
    runs = counter(
        "ops_job_runs_total",
        "Finished runs of the job, by status (never decreases when old runs are pruned).",
        ["job", "status"],
    )
    failures = gauge(
        "ops_job_consecutive_failures",
        "Failed or canceled runs of the job since its last success.",
        ["job"],
    )
    rows_changed = gauge(
        "ops_job_rows_changed",
        "Rows the job's newest successful run changed (rows_changed, or an asset's row_count).",
        ["job"],
    )
    jobs = job_names(defs)
    stats, rows = run_stats(instance, jobs, ledger)
    for job in jobs:
        job_runs = stats[job]
        for status in RUN_STATUSES:
            runs.add_metric([job, status.value.lower()], job_runs.counts.get(status.value, 0))
        failures.add_metric([job], job_runs.consecutive_failures)
        newest = rows.get(job_runs.newest_finished_id)
        if newest is not None and newest.start_time and newest.end_time:
            duration.add_metric([job], newest.end_time - newest.start_time)
        success = rows.get(job_runs.last_success_id)
        if success is not None:
            last_success.add_metric([job], success.end_time or success.start_time)
            if success.run_id not in rows_cache:
                rows_cache[success.run_id] = rows_changed_of_run(instance, success.run_id)
            changed = rows_cache[success.run_id]
            if changed is not None:
                rows_changed.add_metric([job], changed)
    yield from (last_success, duration, runs, failures, rows_changed)


def schedule_families(instance: dg.DagsterInstance, defs: dg.Definitions) -> Iterator:
    from ops_platform.schedules.overdue import schedule_start_times
    from ops_platform.status import schedules_on

    running = gauge(
        "ops_schedule_running", "1 when the schedule is on, 0 when stopped.", ["schedule", "job"]
    )
    on_since = gauge(
        "ops_schedule_on_since_timestamp_seconds",
        "When the schedule was switched on (Unix time, as the daemon stored it): a job that "
        "never succeeded is overdue a window after this.",
        ["schedule", "job"],
    )
    schedules = defs.get_repository_def().schedule_defs
    on = schedules_on(instance, schedules)
    started = schedule_start_times(instance)
    for schedule in sorted(schedules, key=lambda s: s.name):
        labels = [schedule.name, schedule.job_name]
        running.add_metric(labels, 1 if on[schedule.name] else 0)
        if on[schedule.name] and schedule.name in started:
            on_since.add_metric(labels, started[schedule.name].timestamp())
    yield from (running, on_since)


def daemon_family(instance: dg.DagsterInstance, now: datetime):
    from ops_platform.schedules.overdue import daemon_states

    age = gauge(
        "ops_daemon_heartbeat_age_seconds",
        "Seconds since the daemon's last heartbeat (+Inf: never seen).",
        ["daemon"],
    )
    for state in daemon_states(instance, now):
        age.add_metric([state.daemon], float("inf") if state.age_s is None else state.age_s)
    return age


def _watching_since(instance: dg.DagsterInstance) -> dict[str, datetime]:
    """When each asset's catch-up sensor started watching (its cursor), or for a report that
    waits for its inputs its automation sensor (when it was started), by asset name."""
    since = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        name, data = state.instigator_name, state.instigator_data
        if name.endswith("_automation") and getattr(data, "last_sensor_start_timestamp", None):
            since[name.removesuffix("_automation")] = datetime.fromtimestamp(
                data.last_sensor_start_timestamp, UTC
            )
            continue
        cursor = getattr(data, "cursor", None)
        if not name.endswith("_catchup") or not cursor:
            continue
        try:
            since[name.removesuffix("_catchup")] = datetime.fromisoformat(
                json.loads(cursor)["watching_since"]
            )
        except (ValueError, KeyError, TypeError):
            continue
    return since


def partition_family(instance: dg.DagsterInstance, defs: dg.Definitions, now: datetime):
    """Partitions due and never materialized nor attempted, since the asset's catch-up sensor
    started watching (what it still has to run); for a report that waits for its inputs,
    those past their due time (cron plus max runtime) since its automation sensor started."""
    from ops_platform.schedules.build import (
        catchup_partition_keys,
        is_time_partitioned,
        unmaterialized_partitions,
    )
    from ops_platform.schedules.catalog import SCHEDULES

    missing = gauge(
        "ops_partition_missing",
        "Partitions due and not materialized (nor in progress or failed) since the asset's "
        "catch-up sensor started (it should bring this to 0 within minutes); for a report, "
        "partitions past their due time, their inputs not all there or its automation off.",
        ["asset"],
    )
    repo = defs.get_repository_def()
    watching = _watching_since(instance)
    seen = set()
    for row in SCHEDULES:
        if row.kind != "asset" or row.cron is None or row.target in seen:
            continue
        seen.add(row.target)
        key = dg.AssetKey(row.target)
        asset = repo.assets_defs_by_key.get(key)
        partitions_def = getattr(asset, "partitions_def", None)
        if asset is None or not is_time_partitioned(partitions_def):
            continue
        since = watching.get(row.target)
        if since is None:  # its sensor has not started: nothing is due yet by its rule
            missing.add_metric([row.target], 0)
            continue
        grace = {"grace": timedelta(seconds=row.max_runtime_s)} if row.waits_for_inputs else {}
        keys = catchup_partition_keys(partitions_def, row, now, since, **grace)
        absent, _failed = unmaterialized_partitions(instance, key, partitions_def, keys)
        missing.add_metric([row.target], len(absent))
    return missing
