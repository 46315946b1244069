"""Batch steps: the change made to one batch's rows inside its transaction.

A step (see `ops_platform.db.batching.run_in_batches`) changes the batch's rows and, in the
same transaction, the rows that follow them (`Follower`: dependents deleted or updated with
them) and the outbox events they publish (`OutboxEvent`: one `realtime_events` row per row
changed), so a batch commits all of it or none. On Postgres the statements of a batch that
must agree (an update and its outbox events, a delete and its dependent rows, an archive
move) are one statement with data-modifying CTEs; SQLite runs them one after the other under
its single writer lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

from ops_platform.db.engine import is_postgres


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


def rows_of_batch(follower: Follower, batch_keys: str) -> str:
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


def json_object_sql(bind, payload: Mapping[str, str]) -> str:
    """SQL building a JSON object from (key → SQL expression) pairs."""
    function = "json_build_object" if is_postgres(bind) else "json_object"
    pairs = ", ".join(f"'{key}', {expression}" for key, expression in payload.items())
    return f"{function}({pairs})"


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
            gone = rows_of_batch(dependent, f"SELECT {key} FROM gone")
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
        lambda dependent: (
            f"DELETE FROM {dependent.table} WHERE {rows_of_batch(dependent, batch_keys)}"
        ),
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
            rows = rows_of_batch(follower, f"SELECT {key} FROM changed")
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
        lambda f: f"UPDATE {f.table} SET {f.set_sql} WHERE {rows_of_batch(f, batch_keys)}",
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
