"""Bounded batches: each batch its own short transaction, progress logged.

Batches walk the table's integer key upwards (keyset pagination): a batch is the next
`batch_size` matching rows after the last key done, so no batch scans what earlier batches
already removed, and a run that dies half way is finished by the next run (every batch
re-checks the rule, so nothing is changed twice).

Within a batch, a statement sees the rows as `<table>.id > :_after AND <table>.id <= :_upper
AND (<rule>)`; what a batch does to them is its step (`ops_platform.db.batch_steps`).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from ops_platform.db.batch_steps import Follower, delete_batch, rows_of_batch
from ops_platform.db.pacing import run_paced
from ops_platform.log_line import LogLine

# Rows changed by the batches committed so far in the current op attempt, per label:
# {label: [table, rows]}. A transient fault retries the op from the start; what the failed
# attempt committed is kept (see `ops_platform.retries.transient_retries`) so the run reports all.
_attempt_rows: contextvars.ContextVar[dict[str, list] | None] = contextvars.ContextVar(
    "attempt_rows", default=None
)


@contextlib.contextmanager
def counting_committed_rows() -> Iterator[dict[str, list]]:
    """Collect the rows every committed batch changes inside the block."""
    rows: dict[str, list] = {}
    token = _attempt_rows.set(rows)
    try:
        yield rows
    finally:
        _attempt_rows.reset(token)


def _note_committed(label: str, table: str, count: int) -> None:
    rows = _attempt_rows.get()
    if rows is not None and count:
        rows.setdefault(label, [table, 0])[1] += count


# Smallest key: the first batch starts after it.
KEY_FLOOR = -(2**63)

# What a batch step does with the rows of the batch; returns rows changed per label.
BatchStep = Callable[[Connection, str, dict], Mapping[str, int]]


@dataclass
class BatchResult:
    table: str
    label: str = ""  # which rule matched the rows, e.g. "sessions_expired"
    matched: int = 0
    changed: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0
    inserts: bool = False  # rows this label adds (outbox events, archive copies), not changes
    sample_ids: list = field(default_factory=list)  # dry runs: a few of the rows matched
    stopped: str = ""  # set when the run stopped yielding to the database before finishing


@dataclass
class _Totals:
    results: dict[str, BatchResult] = field(default_factory=dict)

    def add(self, label: str, table: str, changed: int) -> None:
        result = self.results.setdefault(label, BatchResult(table=table, label=label))
        result.changed += changed
        result.matched += changed


def count_rows(engine_or_connection, table: str, where: str, params: Mapping) -> int:
    sql = text(f"SELECT count(*) FROM {table} WHERE {where}")
    if isinstance(engine_or_connection, Connection):
        return engine_or_connection.execute(sql, params).scalar_one()
    with engine_or_connection.connect() as connection:
        return connection.execute(sql, params).scalar_one()


SAMPLE_SIZE = 10


def sample_keys(
    connection: Connection, table: str, where: str, params: Mapping, *, key: str = "id"
) -> list:
    """The first few keys matching `where`: what a dry run shows of the rows it would change."""
    sql = text(f"SELECT {key} FROM {table} WHERE {where} ORDER BY {key} LIMIT {SAMPLE_SIZE}")
    return list(connection.execute(sql, params).scalars())


def excluding(where: str, earlier: Sequence[str]) -> str:
    """`where`, minus rows an earlier rule of the same run already takes (for dry runs,
    so overlapping rules are not counted twice). NULL comparisons count as no match."""
    if not earlier:
        return where
    taken = " OR ".join(f"({rule})" for rule in earlier)
    return f"({where}) AND NOT COALESCE(({taken}), false)"


def run_in_batches(
    engine: Engine,
    table: str,
    where: str,
    params: Mapping,
    step: BatchStep,
    *,
    batch_size: int,
    progress: LogLine | None = None,
    label: str | None = None,
    key: str = "id",
    verb: str = "changed",
    tables: Mapping[str, str] | None = None,
) -> list[BatchResult]:
    """Apply `step` to the rows of `table` matching `where`, one paced transaction per batch
    (`batch_size` rows first, then sized to the target duration: see `ops_platform.db.pacing`).

    `step(connection, batch_where, batch_params)` changes the batch's rows (and any rows
    that go with them) inside the batch's transaction and returns rows changed per label;
    the label `label` (default `table`) is the batch's own rows, `tables` names the table of
    any other label (default: the label itself). Returns one result per label, the batch's
    own first.
    """
    label = label or table
    totals = _Totals()
    totals.add(label, table, 0)
    primary = totals.results[label]
    bound = text(
        f"SELECT count(*), max({key}) FROM (SELECT {key} FROM {table} "
        f"WHERE {key} > :_after AND ({where}) ORDER BY {key} LIMIT :_limit) AS batch"
    )
    batch_where = f"{table}.{key} > :_after AND {table}.{key} <= :_upper AND ({where})"
    state = {"after": KEY_FLOOR}

    def work(connection: Connection, size: int):
        selected, upper = connection.execute(
            bound, {**params, "_after": state["after"], "_limit": size}
        ).one()
        changed = {}
        if selected:
            changed = step(
                connection, batch_where, {**params, "_after": state["after"], "_upper": upper}
            )
        return selected, upper, size, changed

    def commit(result) -> tuple[int, bool]:
        selected, upper, size, changed = result
        for changed_label, count in changed.items():
            table_of = (
                table
                if changed_label == label
                else (tables or {}).get(changed_label, changed_label)
            )
            totals.add(changed_label, table_of, count)
            _note_committed(changed_label, table_of, count)
        if selected:
            state["after"] = upper
        return selected, selected >= size

    started = time.perf_counter()
    pacer = run_paced(
        engine,
        table,
        label,
        batch_size,
        work,
        commit,
        position=lambda: None if state["after"] == KEY_FLOOR else state["after"],
        progress=progress,
        verb=verb,
    )
    mine = [t for t in pacer.timings if t.label == label]
    primary.batches = len(mine)
    primary.longest_batch_seconds = max((t.seconds for t in mine), default=0.0)
    primary.seconds = time.perf_counter() - started
    if pacer.stopped and pacer.stopped.label == label:
        primary.stopped = pacer.stopped.describe()
    for result in totals.results.values():
        result.batches = primary.batches
        result.seconds = primary.seconds
        result.longest_batch_seconds = primary.longest_batch_seconds
        result.stopped = primary.stopped
    return list(totals.results.values())


def dry_run_results(
    engine: Engine,
    table: str,
    where: str,
    params: Mapping,
    *,
    label: str | None = None,
    followers: Sequence[Follower] = (),
    key: str = "id",
) -> list[BatchResult]:
    """What a real run of the same rule would change now, counted without changing anything."""
    started = time.perf_counter()
    label = label or table
    with engine.connect() as connection:
        results = [
            BatchResult(
                table=table,
                label=label,
                matched=count_rows(connection, table, where, params),
                sample_ids=sample_keys(connection, table, where, params, key=key),
            )
        ]
        for follower in followers:
            follower_where = rows_of_batch(follower, f"SELECT {key} FROM {table} WHERE {where}")
            results.append(
                BatchResult(
                    table=follower.table,
                    label=follower.name,
                    matched=count_rows(connection, follower.table, follower_where, params),
                )
            )
    for result in results:
        result.seconds = time.perf_counter() - started
    return results


# --- the common case --------------------------------------------------------------------


def delete_in_batches(
    engine: Engine,
    table: str,
    where: str,
    params: Mapping,
    *,
    batch_size: int,
    dry_run: bool = False,
    progress: LogLine | None = None,
    label: str | None = None,
    key: str = "id",
) -> BatchResult:
    """Delete rows of `table` matching `where`, `batch_size` rows per transaction.

    A dry run counts what a real run would delete and changes nothing.
    """
    if dry_run:
        return dry_run_results(engine, table, where, params, label=label)[0]
    [result] = run_in_batches(
        engine,
        table,
        where,
        params,
        lambda connection, batch_where, batch_params: delete_batch(
            connection, table, batch_where, batch_params, label=label
        ),
        batch_size=batch_size,
        progress=progress,
        label=label,
        key=key,
        verb="deleted",
    )
    return result
