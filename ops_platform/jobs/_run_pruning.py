"""Pruning of the Dagster instance, for `database_maintenance`: finished runs older than a
retention are deleted with their event logs, since the instance's event log otherwise grows
without bound. A run whose records cannot be deleted (broken or unreadable storage rows) is
left alone and counted by the error met; the others are still deleted."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field

from ops_platform.db.engine import utcnow
from ops_platform.jobs._common import DestructiveJobConfig, add_earlier_counts, count_done, job_op
from ops_platform.resources.database import Database
from ops_platform.retries import is_transient

FINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]


@dataclass
class RunPruneResult:
    matched: int = 0
    deleted: int = 0
    unfinished_old: int = 0  # old runs still queued/started: left alone, counted
    not_deleted: Counter = field(default_factory=Counter)  # by the error met


def prune_runs(
    instance: dg.DagsterInstance,
    cutoff: datetime,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    progress=None,
) -> RunPruneResult:
    """Delete finished runs created before `cutoff`, with their event logs (delete_run)."""
    result = RunPruneResult()
    finished = dg.RunsFilter(created_before=cutoff, statuses=FINISHED_RUN_STATUSES)
    result.unfinished_old = instance.get_runs_count(
        dg.RunsFilter(created_before=cutoff)
    ) - instance.get_runs_count(finished)
    if dry_run:
        result.matched = instance.get_runs_count(finished)
        return result
    after = None  # the last run left alone: the next page starts past it
    while True:
        records = instance.get_run_records(
            filters=finished, limit=min(batch_size, 500), ascending=True, cursor=after
        )
        if not records:
            break
        for record in records:
            if _delete_run(instance, record.dagster_run.run_id, result, progress):
                count_done(result, deleted=1, matched=1)
            else:
                result.matched += 1
                after = record.dagster_run.run_id
        if progress:
            progress(
                f"database_maintenance: deleted {result.deleted} Dagster runs created before {cutoff:%Y-%m-%d}"
            )
    return result


def _delete_run(instance: dg.DagsterInstance, run_id: str, result: RunPruneResult, log) -> bool:
    """Delete one run; a run that cannot be deleted for good is counted and left alone."""
    try:
        instance.delete_run(run_id)
    except Exception as error:
        if is_transient(error):
            raise
        result.not_deleted[type(error).__name__] += 1
        if log:
            log(f"database_maintenance: run {run_id} left alone, cannot be deleted: {error}")
        return False
    return True


class RunPruningConfig(DestructiveJobConfig):
    run_retention_days: float = Field(
        default=90, ge=1, description="Delete finished Dagster runs older than this."
    )


@job_op(
    "database_maintenance",
    "Delete finished Dagster runs (and their event logs) older than the retention.",
    when_lock_held={"rows_changed": 0},
)
def prune_dagster_runs(
    context: dg.OpExecutionContext, config: RunPruningConfig, database: Database
) -> dg.Output[int]:
    cutoff = utcnow() - timedelta(days=config.run_retention_days)
    result = prune_runs(
        context.instance,
        cutoff,
        batch_size=config.batch_size,
        dry_run=config.dry_run,
        progress=context.log.info,
    )
    retried = add_earlier_counts(context, result)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(
        f"database_maintenance {verb} {result.matched} Dagster runs created before {cutoff:%Y-%m-%d %H:%M}Z; "
        f"{result.unfinished_old} old unfinished runs left alone"
    )
    metadata = {
        "dry_run": config.dry_run,
        "runs_created_before": cutoff.isoformat(),
        "runs_matched": result.matched,
        "runs_deleted": result.deleted,
        "unfinished_old_runs": result.unfinished_old,
        "runs_not_deleted": sum(result.not_deleted.values()),
        "runs_not_deleted_by_error": dg.MetadataValue.json(dict(result.not_deleted)),
        "rows_matched": result.matched,
        "rows_changed": result.deleted,
        **retried,
    }
    return dg.Output(result.deleted, metadata=metadata)
