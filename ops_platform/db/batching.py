"""Bounded batches: each batch its own short transaction, progress logged.

Batches walk the table's integer key upwards (keyset pagination): a batch is the next
`batch_size` matching rows after the last key done, so no batch scans what earlier batches
already removed, and a run that dies half way is finished by the next run (every batch
re-checks the rule, so nothing is changed twice).

Within a batch, a statement sees the rows as `<table>.id > :_after AND <table>.id <= :_upper
AND (<rule>)`. On Postgres the statements of a batch that must agree (an update and its
outbox events, a delete and its dependent rows, an archive move) are one statement with
data-modifying CTEs; SQLite runs them one after the other under its single writer lock.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from ops_platform.db.engine import is_postgres
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


@dataclass(frozen=True)
class OutboxEvent:
    """A `realtime_events` row written for every row a batch changes.

    `channel_sql` and the `payload` values are SQL expressions over the changed row; they
    must use columns the update leaves alone (Postgres sees the row after the update,
    SQLite before it). The rule's parameters must include `now` (the event's created_at).
    """

    event: str
    channel_sql: str
    payload: Mapping[str, str]


@dataclass(frozen=True)
class Follower:
    """Rows of another table that follow a changed row, e.g. the gifts of a festival."""

    table: str
    foreign_key: str
    set_sql: str = ""  # for updates; deletes ignore it
    where: str = "true"
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.table


@dataclass
class _Totals:
    results: dict[str, BatchResult] = field(default_factory=dict)

    def add(self, label: str, table: str, changed: int) -> None:
        result = self.results.setdefault(label, BatchResult(table=table, label=label))
        result.changed += changed
        result.matched += changed


def _of_batch(follower: Follower, batch_keys: str) -> str:
    """Condition on the follower's rows that go with the batch rows `batch_keys` selects."""
    return f"{follower.foreign_key} IN ({batch_keys}) AND ({follower.where})"


def _change_each(
    connection: Connection,
    followers: Sequence[Follower],
    statement: Callable[[Follower], str],
    params: Mapping,
) -> dict[str, int]:
    """Run `statement(follower)` for each follower: rows changed per follower's name."""
    return {f.name: connection.execute(text(statement(f)), params).rowcount for f in followers}


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


def json_object_sql(bind, payload: Mapping[str, str]) -> str:
    """SQL building a JSON object from (key → SQL expression) pairs."""
    function = "json_build_object" if is_postgres(bind) else "json_object"
    pairs = ", ".join(f"'{key}', {expression}" for key, expression in payload.items())
    return f"{function}({pairs})"


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
            follower_where = _of_batch(follower, f"SELECT {key} FROM {table} WHERE {where}")
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


# --- batch steps ----------------------------------------------------------------------


def delete_batch(
    connection: Connection,
    table: str,
    batch_where: str,
    params: Mapping,
    *,
    key: str = "id",
    dependents: Sequence[Follower] = (),
    label: str | None = None,
) -> dict[str, int]:
    """Delete the batch's rows and, in the same transaction, their dependent rows (whose
    foreign key points at the batch rows' `key`)."""
    label = label or table
    if not dependents:
        return {
            label: connection.execute(
                text(f"DELETE FROM {table} WHERE {batch_where}"), params
            ).rowcount
        }
    if is_postgres(connection):
        ctes = [f"gone AS (DELETE FROM {table} WHERE {batch_where} RETURNING {key})"]
        for n, dependent in enumerate(dependents):
            gone = _of_batch(dependent, f"SELECT {key} FROM gone")
            ctes.append(f"d{n} AS (DELETE FROM {dependent.table} WHERE {gone} RETURNING 1)")
        counts = ", ".join(
            ["(SELECT count(*) FROM gone)"]
            + [f"(SELECT count(*) FROM d{n})" for n in range(len(dependents))]
        )
        row = connection.execute(text(f"WITH {', '.join(ctes)} SELECT {counts}"), params).one()
        return {label: row[0], **{d.name: row[n + 1] for n, d in enumerate(dependents)}}
    batch_keys = f"SELECT {key} FROM {table} WHERE {batch_where}"
    changed = _change_each(
        connection,
        dependents,
        lambda dependent: f"DELETE FROM {dependent.table} WHERE {_of_batch(dependent, batch_keys)}",
        params,
    )
    return {
        label: connection.execute(
            text(f"DELETE FROM {table} WHERE {batch_where}"), params
        ).rowcount,
        **changed,
    }


def update_batch(
    connection: Connection,
    table: str,
    set_sql: str,
    batch_where: str,
    params: Mapping,
    *,
    label: str | None = None,
    event: OutboxEvent | None = None,
    followers: Sequence[Follower] = (),
    key: str = "id",
) -> dict[str, int]:
    """Update the batch's rows; in the same transaction update their followers and write
    one outbox event per changed row."""
    label = label or table
    params = {**params, "_event": event.event if event else None}
    if not event and not followers:
        return {
            label: connection.execute(
                text(f"UPDATE {table} SET {set_sql} WHERE {batch_where}"), params
            ).rowcount
        }
    payload = json_object_sql(connection, event.payload) if event else None
    insert_event = "INSERT INTO realtime_events (channel, event, payload, created_at) "
    if is_postgres(connection):
        ctes = [
            f"changed AS (UPDATE {table} SET {set_sql} WHERE {batch_where} RETURNING {table}.*)"
        ]
        for n, follower in enumerate(followers):
            rows = _of_batch(follower, f"SELECT {key} FROM changed")
            ctes.append(
                f"f{n} AS (UPDATE {follower.table} SET {follower.set_sql} WHERE {rows} RETURNING 1)"
            )
        if event:
            ctes.append(
                f"events AS ({insert_event}SELECT {event.channel_sql}, :_event, {payload}, :now "
                f"FROM changed RETURNING 1)"
            )
        counts = ["(SELECT count(*) FROM changed)"] + [
            f"(SELECT count(*) FROM f{n})" for n in range(len(followers))
        ]
        if event:
            counts.append("(SELECT count(*) FROM events)")
        row = connection.execute(
            text(f"WITH {', '.join(ctes)} SELECT {', '.join(counts)}"), params
        ).one()
        changed = {label: row[0], **{f.name: row[n + 1] for n, f in enumerate(followers)}}
        if event:
            changed["realtime_events"] = row[-1]
        return changed
    # SQLite: the batch's rows still match before the update, so followers and events go
    # first; the first write takes the writer lock, so nothing changes in between.
    batch_keys = f"SELECT {key} FROM {table} WHERE {batch_where}"
    changed = _change_each(
        connection,
        followers,
        lambda f: f"UPDATE {f.table} SET {f.set_sql} WHERE {_of_batch(f, batch_keys)}",
        params,
    )
    if event:
        changed["realtime_events"] = connection.execute(
            text(
                f"{insert_event}SELECT {event.channel_sql}, :_event, {payload}, :now FROM {table} WHERE {batch_where}"
            ),
            params,
        ).rowcount
    updated = connection.execute(
        text(f"UPDATE {table} SET {set_sql} WHERE {batch_where}"), params
    ).rowcount
    if event and changed["realtime_events"] != updated:
        raise RuntimeError(
            f"{table}: {updated} rows updated but {changed['realtime_events']} events written"
        )
    return {label: updated, **changed}


def move_batch(
    connection: Connection,
    source: str,
    target: str,
    columns: Sequence[str],
    batch_where: str,
    params: Mapping,
    *,
    label: str | None = None,
    target_key: str = "id",
    extra: Mapping[str, str] | None = None,
    target_label: str | None = None,
) -> dict[str, int]:
    """Move the batch's rows of `source` into `target` (same key) in one transaction.

    A row already in `target` (an earlier, interrupted move cannot leave one, but a
    hand-copied row might) is not duplicated; it is still removed from `source`.
    `extra` maps more target columns to SQL expressions, e.g. archived_at → :now;
    `target_label` names the copied count (default `target`).
    """
    label = label or source
    target_label = target_label or target
    extra = dict(extra or {})
    target_columns = ", ".join([*columns, *extra])
    source_columns = ", ".join(columns)
    values = ", ".join([*columns, *extra.values()])
    if is_postgres(connection):
        row = connection.execute(
            text(
                f"WITH moved AS (DELETE FROM {source} WHERE {batch_where} RETURNING {source_columns}), "
                f"copied AS (INSERT INTO {target} ({target_columns}) SELECT {values} FROM moved "
                f"ON CONFLICT ({target_key}) DO NOTHING RETURNING 1) "
                f"SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM copied)"
            ),
            params,
        ).one()
        return {label: row[0], target_label: row[1]}
    copied = connection.execute(
        text(
            f"INSERT INTO {target} ({target_columns}) SELECT {values} FROM {source} "
            f"WHERE {batch_where} ON CONFLICT ({target_key}) DO NOTHING"
        ),
        params,
    ).rowcount
    moved = connection.execute(text(f"DELETE FROM {source} WHERE {batch_where}"), params).rowcount
    return {label: moved, target_label: copied}


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
