"""Bounded batches: each batch its own short transaction, progress logged."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from sqlalchemy import Engine, text

from ops_platform.db.engine import is_postgres

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    table: str
    label: str = ""  # which rule matched the rows, e.g. "sessions_expired"
    matched: int = 0
    changed: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0


def count_rows(engine: Engine, table: str, where: str, params: Mapping) -> int:
    with engine.connect() as connection:
        return connection.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()


def delete_in_batches(
    engine: Engine,
    table: str,
    where: str,
    params: Mapping,
    *,
    batch_size: int,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    label: str | None = None,
) -> BatchResult:
    """Delete rows of `table` matching `where`, `batch_size` rows per transaction.

    A dry run counts what a real run would delete and changes nothing. Re-running after a
    crash simply continues: every batch re-selects what still matches.
    Postgres deletes by `ctid` (no second index lookup); SQLite by rowid.
    """
    result = BatchResult(table=table, label=label or table)
    started = time.perf_counter()
    if dry_run:
        result.matched = count_rows(engine, table, where, params)
        result.seconds = time.perf_counter() - started
        return result
    if is_postgres(engine):
        statement = text(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {table} WHERE {where} LIMIT :batch_size))"
        )
    else:
        statement = text(
            f"DELETE FROM {table} WHERE rowid IN ("
            f"SELECT rowid FROM {table} WHERE {where} LIMIT :batch_size)"
        )
    while True:
        batch_started = time.perf_counter()
        with engine.begin() as connection:
            deleted = connection.execute(statement, {**params, "batch_size": batch_size}).rowcount
        elapsed = time.perf_counter() - batch_started
        result.longest_batch_seconds = max(result.longest_batch_seconds, elapsed)
        if deleted <= 0:
            break
        result.changed += deleted
        result.batches += 1
        if progress:
            progress(f"{result.label}: deleted {result.changed} rows in {result.batches} batches")
        if deleted < batch_size:
            break
    result.matched = result.changed
    result.seconds = time.perf_counter() - started
    return result
