"""What every op-based job shares: run config base, transient retries, singleton lock,
and the metadata that reports rows examined and changed."""

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy.exc import DBAPIError, OperationalError

from ops_platform.db.batching import BatchResult, counting_committed_rows
from ops_platform.db.faults import fault_line, permanent_database_fault
from ops_platform.resources.database import Database, JobAlreadyRunning
from ops_platform.schedules.catalog import row_for

MAX_TRANSIENT_RETRIES = 4
# A run that failed on its run config carries this tag (value "config"): the failure alerts
# report it as a config error, not as the job failing, and do not count it in a streak.
FAILURE_KIND_TAG = "ops/failure"
CONFIG_FAILURE = "config"


class RunConfigError(ValueError):
    """Run config that only the run itself can find wrong (e.g. a folder outside the allowed
    one): the run fails with this one line, tagged as a config error."""


class DestructiveJobConfig(dg.Config):
    """Run config every destructive op accepts."""

    dry_run: bool = Field(default=False, description="Report what would change; change nothing.")
    batch_size: int = Field(default=5000, gt=0, le=1_000_000, description="Rows per transaction.")


class GateConfig(DestructiveJobConfig):
    """Run config of a job the blast-radius gate guards. Unset limits come from the job's row
    in the schedule table (ops_platform/schedules/catalog.py), whose defaults are 1000, 0.5, 10."""

    confirm_large: bool = Field(
        default=False, description="Change the rows even when the blast-radius gate refuses."
    )
    gate_min_rows: int | None = Field(
        default=None, ge=0, description="The gate applies from this many rows changed."
    )
    max_fraction: float | None = Field(
        default=None, gt=0, description="Refuse changing more than this fraction of a table."
    )
    max_factor: float | None = Field(
        default=None, gt=0, description="Refuse more than this times the median of recent runs."
    )

    def gate_scope(self) -> str:
        """Which of the job's runs are comparable with this one (e.g. the same mode)."""
        return ""


class GuardedJobConfig(GateConfig):
    """Run config of a job that changes app rows in batches: the gate, and the pacing of its
    batch transactions (`ops_platform.db.pacing`; unset values from the schedule table). The
    batch size starts at `batch_size` and then follows the target duration."""

    target_batch_seconds: float | None = Field(
        default=None, gt=0, description="Aim of each batch transaction's duration (0.5)."
    )
    min_batch_size: int | None = Field(default=None, gt=0, description="Smallest batch (100).")
    max_batch_size: int | None = Field(default=None, gt=0, description="Largest batch (200000).")
    max_replica_lag_seconds: float | None = Field(
        default=None, gt=0, description="Pause while a replica's replay lag exceeds this (10)."
    )
    max_wait_seconds: float | None = Field(
        default=None, ge=0, description="Stop cleanly after pausing this long in a row (300)."
    )
    lock_timeout_seconds: float | None = Field(
        default=None, gt=0, description="lock_timeout of each batch transaction (1)."
    )
    statement_timeout_seconds: float | None = Field(
        default=None, gt=0, description="statement_timeout of each batch transaction (30)."
    )


def backoff_seconds(retry_number: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**retry_number))


def is_transient(error: BaseException) -> bool:
    if permanent_database_fault(error) is not None:
        return False
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


# Run tag (per step) holding the rows that earlier attempts of the step committed before a
# transient fault: {label: [table, rows]}. Tags live in the instance, so the next attempt
# reads them whatever process or worker it runs in.
EARLIER_ATTEMPTS_TAG = "ops/rows_before_retry"


def _earlier_attempts_tag(context: dg.OpExecutionContext) -> str:
    return f"{EARLIER_ATTEMPTS_TAG}.{context.op_handle.name}"


def earlier_attempts_rows(context: dg.OpExecutionContext) -> dict[str, list]:
    """What earlier attempts of this step committed before their transient fault."""
    if context.retry_number == 0:
        return {}
    run = context.instance.get_run_by_id(context.run_id)
    raw = run.tags.get(_earlier_attempts_tag(context)) if run else None
    return json.loads(raw) if raw else {}


def _keep_committed_rows(context: dg.OpExecutionContext, committed: dict[str, list]) -> int:
    """Add this attempt's committed rows to the step's tally; returns the rows it adds."""
    tally = earlier_attempts_rows(context)
    for label, (table, rows) in committed.items():
        tally.setdefault(label, [table, 0])[1] += rows
    if committed:
        context.instance.add_run_tags(
            context.run_id, {_earlier_attempts_tag(context): json.dumps(tally, sort_keys=True)}
        )
    return sum(rows for _, rows in committed.values())


def with_earlier_attempts(
    context: dg.OpExecutionContext, results: Iterable[BatchResult]
) -> list[BatchResult]:
    """`results` of this attempt plus the rows earlier attempts committed, so metadata and
    logs report what the run did in all, not only its last attempt."""
    results = [dataclasses.replace(result) for result in results]
    by_label = {result.label: result for result in results}
    for label, (table, rows) in earlier_attempts_rows(context).items():
        result = by_label.get(label)
        if result is None:
            result = by_label[label] = BatchResult(table=table, label=label)
            results.append(result)
        result.matched += rows
        result.changed += rows
    return results


def attempts_metadata(
    context: dg.OpExecutionContext,
    last: Iterable[BatchResult],
    in_all: Iterable[BatchResult],
) -> dict:
    """After retries: how many attempts ran and the rows the earlier ones changed."""
    if context.retry_number == 0:
        return {}
    earlier = sum(r.changed for r in in_all) - sum(r.changed for r in last)
    return {"attempts": context.retry_number + 1, "rows_changed_by_earlier_attempts": earlier}


@contextlib.contextmanager
def transient_retries(context: dg.OpExecutionContext) -> Iterator[None]:
    """Turn transient faults (lost DB connection, …) into a Dagster retry with backoff and
    jitter; anything else (bad data, bugs) fails fast with its own message. The rows the
    batches of a failed attempt committed are kept for the run's totals
    (`with_earlier_attempts`)."""
    try:
        with counting_committed_rows() as committed:
            yield
    except RunConfigError as error:
        context.instance.add_run_tags(context.run_id, {FAILURE_KIND_TAG: CONFIG_FAILURE})
        raise dg.Failure(description=f"run config error: {error}", allow_retries=False) from None
    except Exception as error:
        meaning = permanent_database_fault(error)
        if meaning is not None:
            raise dg.Failure(description=fault_line(error, meaning), allow_retries=False) from None
        if is_transient(error) and context.retry_number < MAX_TRANSIENT_RETRIES:
            wait = backoff_seconds(context.retry_number)
            kept = _keep_committed_rows(context, committed)
            context.log.warning(
                f"transient fault, retry {context.retry_number + 1} in {wait:.1f}s "
                f"({kept} rows committed by this attempt count in the run's totals): {error}"
            )
            raise dg.RetryRequested(
                max_retries=MAX_TRANSIENT_RETRIES, seconds_to_wait=wait
            ) from error
        raise


@contextlib.contextmanager
def singleton(context: dg.OpExecutionContext, database: Database) -> Iterator[bool]:
    """Yield True if this run holds the job's lock, False if another run already acts.

    On SQLite the lock is a lease as long as the job's max runtime (schedule table), so a
    crashed holder blocks the job no longer than run monitoring would have let it run."""
    try:
        lease = timedelta(seconds=row_for(context.job_name).max_runtime_s)
    except KeyError:
        lease = timedelta(hours=6)
    try:
        with database.job_lock(context.job_name, lease=lease):
            yield True
    except JobAlreadyRunning as busy:
        context.log.warning(f"{busy}; this run changes nothing")
        yield False


def rows_metadata(results: Iterable[BatchResult], started: float, dry_run: bool, **extra) -> dict:
    """Output metadata of a cleanup op. `rows_changed` is what the stalled-cleanup alert reads."""
    results = list(results)
    metadata: dict = {
        "dry_run": dry_run,
        "rows_matched": sum(r.matched for r in results),
        "rows_changed": 0 if dry_run else sum(r.changed for r in results),
        "duration_s": round(time.perf_counter() - started, 3),
    }
    for r in results:
        metadata[f"{r.label}_matched"] = r.matched
        metadata[f"{r.label}_changed"] = 0 if dry_run else r.changed
    if results:
        metadata["longest_transaction_s"] = round(max(r.longest_batch_seconds for r in results), 3)
    metadata.update(extra)
    return metadata
