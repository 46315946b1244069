"""Transient faults become Dagster retries with backoff; what earlier attempts committed is
kept for the run's totals. Shared by op jobs and assets alike.

What an attempt has done for good is noted as it happens: the rows of each committed batch
(`ops_platform.db.batching` notes them), and the counts a job keeps of anything else it
finished (`note_done`: a file deleted, a table vacuumed, a mail marked sent). When the
attempt ends in a retry, those notes are kept in a run tag; the attempt that succeeds adds
them to its own (`with_earlier_attempts` for batch results, `add_earlier_counts` for a job's
counters), so metadata and logs report what the whole run did."""

import contextlib
import dataclasses
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import dagster as dg
from sqlalchemy.exc import DBAPIError, OperationalError

from ops_platform.db.batching import BatchResult, counting_committed_rows
from ops_platform.db.batching import _note_committed as note_committed
from ops_platform.db.faults import fault_line, permanent_database_fault

MAX_TRANSIENT_RETRIES = 4
T = TypeVar("T")
# A run that failed on its run config carries this tag (value "config"): the failure alerts
# report it as a config error, not as the job failing, and do not count it in a streak.
FAILURE_KIND_TAG = "ops/failure"
CONFIG_FAILURE = "config"


class RunConfigError(ValueError):
    """Run config that only the run itself can find wrong (e.g. a folder outside the allowed
    one): the run fails with this one line, tagged as a config error."""


def backoff_seconds(retry_number: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**retry_number))


def is_transient(error: BaseException) -> bool:
    if permanent_database_fault(error) is not None:
        return False
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def first_line(error: BaseException) -> str:
    """The driver's own first line of `error` (not SQLAlchemy's wrapping and links)."""
    driver = getattr(error, "orig", None) or error
    return (str(driver).strip().splitlines() or [type(driver).__name__])[0]


class StillTransient(Exception):
    """Every attempt of `retry_transient_faults` met a transient fault; `last` is the final
    one, `attempts` how many were made."""

    def __init__(self, last: BaseException, attempts: int):
        super().__init__(str(last))
        self.last, self.attempts = last, attempts


def retry_transient_faults(call: Callable[[], T], warn: Callable[[str], None]) -> T:
    """`call()`, tried again on a transient fault with the ops' policy (as many retries,
    the same backoff) where Dagster cannot retry for us: resource set-up runs before the
    op, so a RetryRequested there would fail the step. Raises `StillTransient` when the
    fault outlasts every retry; any other error at once."""
    for retry_number in range(MAX_TRANSIENT_RETRIES + 1):
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            if retry_number == MAX_TRANSIENT_RETRIES:
                raise StillTransient(error, retry_number + 1) from error
            wait = backoff_seconds(retry_number)
            warn(f"transient fault, retry {retry_number + 1} in {wait:.1f}s: {first_line(error)}")
            time.sleep(wait)
    raise AssertionError("unreachable")


# Run tag (per step) holding what earlier attempts of the step committed before a transient
# fault: {label: [table, rows]} for batches, {label: [null, count]} for `note_done` counts.
# Tags live in the instance, so the next attempt reads them whatever process or worker it
# runs in.
EARLIER_ATTEMPTS_TAG = "ops/rows_before_retry"


def note_done(**counts: int) -> None:
    """Note work an attempt has finished for good (committed, deleted, sent), by the name of
    the counter that reports it: `note_done(files_deleted=1, bytes_freed=512)`; a Counter's
    key as `<counter>__<key>` (`outcomes__succeeded=3`). Outside an op attempt it does nothing."""
    for name, count in counts.items():
        # Kept beside the batches' rows, with no table: `with_earlier_attempts` leaves them out.
        note_committed(name, None, count)


def add_counts(result, **counts: int) -> None:
    """Add `counts` to the counters of `result` of the same names (`outcomes__succeeded`:
    `result.outcomes["succeeded"]`)."""
    for label, count in counts.items():
        name, _, key = label.partition("__")
        if key:
            getattr(result, name)[key] += count
        else:
            setattr(result, name, getattr(result, name) + count)


def count_done(result, **counts: int) -> None:
    """Add `counts` to the counters of `result` of the same names and `note_done` them: the
    one call a job makes as each piece of its work is finished for good."""
    add_counts(result, **counts)
    note_done(**counts)


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
    """Add this attempt's committed rows (and `note_done` counts) to the step's tally; returns
    the rows it adds."""
    tally = earlier_attempts_rows(context)
    for label, (table, rows) in committed.items():
        tally.setdefault(label, [table, 0])[1] += rows
    if committed:
        context.instance.add_run_tags(
            context.run_id, {_earlier_attempts_tag(context): json.dumps(tally, sort_keys=True)}
        )
    return sum(rows for table, rows in committed.values() if table is not None)


def with_earlier_attempts(
    context: dg.OpExecutionContext, results: Iterable[BatchResult]
) -> list[BatchResult]:
    """`results` of this attempt plus the rows earlier attempts committed, so metadata and
    logs report what the run did in all, not only its last attempt."""
    results = [dataclasses.replace(result) for result in results]
    by_label = {result.label: result for result in results}
    for label, (table, rows) in earlier_attempts_rows(context).items():
        if table is None:
            continue  # a `note_done` count, not a batch's rows
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


def add_earlier_counts(context: dg.OpExecutionContext, result) -> dict:
    """Add to `result`'s counters what earlier attempts of this step noted with `note_done`,
    so metadata and logs report what the whole run did. Returns the metadata saying so:
    `attempts` and `done_by_earlier_attempts` (nothing on a first attempt)."""
    if context.retry_number == 0:
        return {}
    earlier = {
        label: count
        for label, (table, count) in earlier_attempts_rows(context).items()
        if table is None
    }
    add_counts(result, **earlier)
    return {
        "attempts": context.retry_number + 1,
        "done_by_earlier_attempts": dg.MetadataValue.json(dict(sorted(earlier.items()))),
    }


@contextlib.contextmanager
def transient_retries(context: dg.OpExecutionContext) -> Iterator[None]:
    """Turn transient faults (lost DB connection, …) into a Dagster retry with backoff and
    jitter; anything else (bad data, bugs) fails fast with its own message. What an attempt
    that ends in a retry committed (batches, `note_done` counts) is kept for the run's totals
    (`with_earlier_attempts`, `add_earlier_counts`), whichever fault asked for the retry."""
    try:
        with counting_committed_rows() as committed:
            yield
    except dg.RetryRequested:
        _keep_committed_rows(context, committed)  # e.g. a mail server or object store outage
        raise
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
