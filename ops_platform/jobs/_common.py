"""What every op-based job shares: run config base, the op decorator (schedule-table tags,
transient retries, singleton lock, the output of a run that found the lock held, the run's
duration), and the metadata that reports rows examined and changed. The transient retries
live in `ops_platform.retries` (assets use them too)."""

import contextlib
import functools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import dagster as dg
from pydantic import Field

from ops_platform.db.batching import BatchResult
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database, JobAlreadyRunning

# The jobs import the retry helpers from here too.
from ops_platform.retries import (  # noqa: F401
    CONFIG_FAILURE,
    FAILURE_KIND_TAG,
    MAX_TRANSIENT_RETRIES,
    RunConfigError,
    add_counts,
    add_earlier_counts,
    attempts_metadata,
    backoff_seconds,
    count_done,
    note_done,
    transient_retries,
    with_earlier_attempts,
)
from ops_platform.schedules.catalog import job_tags, op_tags, row_for

LOCK_HELD = "another run holds the lock"
MAX_LISTED = 50  # items listed in metadata and logs; counts are always complete


class DestructiveJobConfig(dg.Config):
    """Run config every destructive op accepts."""

    dry_run: bool = Field(default=False, description="Report what would change; change nothing.")
    batch_size: int = Field(default=5000, gt=0, le=1_000_000, description="Rows per transaction.")

    def batching(self, log: LogLine | None = None) -> dict:
        """How `delete_in_batches` goes about this run: its batch size, dry run and log."""
        return {"batch_size": self.batch_size, "dry_run": self.dry_run, "progress": log}


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


def lock_held_output(reason: str = LOCK_HELD, **zero_counts) -> dg.Output[int]:
    """The output of a run that found another run of its job acting: it changed nothing, says
    why, and reports its counts as 0 (e.g. `rows_changed=0`, which the stalled-cleanup alert
    reads)."""
    return dg.Output(0, metadata={"skipped": reason, **zero_counts})


def job_op(
    job_name: str,
    description: str,
    *,
    name: str | None = None,
    alone: bool = True,
    retried: bool = True,
    when_lock_held: dict | None = None,
    lock_held_reason: str = LOCK_HELD,
):
    """Make the decorated function the op of job `job_name` (named `name`, by default the
    function's name), its tags from the schedule table.

    The body runs with transient faults turned into retries (`transient_retries`; not when
    `retried=False`: a body whose change a retry would make twice) and, when
    `alone`, under the job's singleton lock (it needs a `database` resource): a run that finds
    the lock held changes nothing and outputs 0 with `skipped` and the zero counts
    `when_lock_held` (e.g. `{"rows_changed": 0}`). The op's `dg.Output` gets `duration_s`
    unless the body set it. The body takes `context` first; Dagster reads its signature for the
    config class and the resources."""

    def decorate(body):
        @functools.wraps(body)
        def op_body(context: dg.OpExecutionContext, **inputs):
            started = time.perf_counter()
            retries = transient_retries(context) if retried else contextlib.nullcontext()
            with retries, _alone(context, inputs, alone) as acting:
                if not acting:
                    return lock_held_output(lock_held_reason, **(when_lock_held or {}))
                output = body(context, **inputs)
            return _with_duration(output, started)

        op_name = name or body.__name__
        return dg.op(name=op_name, tags=op_tags(job_name), description=description)(op_body)

    return decorate


def _alone(context: dg.OpExecutionContext, inputs: dict, alone: bool):
    return singleton(context, inputs["database"]) if alone else contextlib.nullcontext(True)


def _with_duration(output, started: float):
    if not isinstance(output, dg.Output) or "duration_s" in output.metadata:
        return output
    duration = {"duration_s": round(time.perf_counter() - started, 3)}
    return dg.Output(output.value, output.output_name, metadata={**output.metadata, **duration})


@dataclass
class Tally:
    """Base of a job's result that counts its work by name in one Counter: the names in
    `COUNTED`, read and added to as attributes (`result.sent`, `count_done(result, sent=1)`),
    reported in that order by `counted()`."""

    COUNTED = ()
    counts: Counter = field(default_factory=Counter)

    def __getattr__(self, name: str) -> int:
        # Called only for names not found otherwise: a counted name reads its count.
        if name in type(self).COUNTED:
            return self.counts[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in type(self).COUNTED:
            self.counts[name] = value
        else:
            super().__setattr__(name, value)

    def counted(self) -> dict[str, int]:
        return {name: self.counts[name] for name in self.COUNTED}


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


def bullet_list(items: list[str]) -> dg.MetadataValue:
    """The first `MAX_LISTED` items as a Markdown list, saying how many more there are."""
    shown = items[:MAX_LISTED]
    more = f"\n- … and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return dg.MetadataValue.md("\n".join(f"- `{item}`" for item in shown) + more)


def warn_listed(warn: LogLine, prefix: str, items: list[str]) -> None:
    """One warning per item, `prefix` first, for the first `MAX_LISTED` items only: the
    metadata counts them all."""
    for item in items[:MAX_LISTED]:
        warn(f"{prefix}{item}")


def one_op_job(name: str, op: dg.OpDefinition, description: str) -> dg.JobDefinition:
    """The job `name` of the single op `op`, its tags from the schedule table."""

    @dg.job(name=name, tags=job_tags(name), description=description)
    def job():
        op()

    return job
