"""Pacing of batch transactions inside the web app's own database.

- **Adaptive size.** Each batch's size comes from the rate of the batch before, so that one
  transaction takes about `target_batch_seconds`: it grows at most 2x a batch and shrinks at
  once, within `min_batch_size`..`max_batch_size`. Progress logs give the rate.
- **Yield (Postgres).** Before each batch the job waits while any streaming replica's
  `replay_lag` exceeds `max_replica_lag_seconds`, or while a session waits on a lock on the
  batch's table (or behind a session holding one). After `max_wait_seconds` of waiting in a
  row it stops cleanly: the run reports why and after which key, and the next run continues
  (every batch re-checks its rule, so nothing is done twice).
- **Timeouts (Postgres).** Every batch transaction sets `lock_timeout` and
  `statement_timeout`, so the job never sits in a lock queue with the app behind it for longer
  than `lock_timeout`. A batch that hits either is rolled back, shrinks, and is retried after
  a pause that counts towards the same bounded wait.

Jobs get a `Pacer` through `use_pacer` (the op builds it from run config and the schedule
table); without one, batch loops use the defaults below.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from ops_platform.db.engine import is_postgres
from ops_platform.log_line import LogLine


@dataclass(frozen=True)
class Pacing:
    """How batch transactions are sized and when they wait (defaults: README)."""

    target_batch_seconds: float = 0.5
    min_batch_size: int = 100
    max_batch_size: int = 200_000
    max_replica_lag_seconds: float = 10.0
    max_wait_seconds: float = 300.0
    lock_timeout_seconds: float = 1.0
    statement_timeout_seconds: float = 30.0
    poll_seconds: float = 1.0


PACING_KEYS = tuple(Pacing.__dataclass_fields__)

# Postgres errors that mean "the app needs what this batch wants": lock_not_available
# (lock_timeout), query_canceled (statement_timeout), deadlock, serialization failure.
CONTENTION_SQLSTATES = {"55P03", "57014", "40P01", "40001"}

YIELD_CHECK = text(
    """
    SELECT
      (SELECT max(EXTRACT(EPOCH FROM replay_lag)) FROM pg_stat_replication),
      (SELECT count(*) FROM pg_stat_activity a
        WHERE a.pid <> pg_backend_pid() AND a.wait_event_type = 'Lock'
          AND EXISTS (
            SELECT 1 FROM pg_locks l
             WHERE l.relation = to_regclass(:table)
               AND ((l.pid = a.pid AND NOT l.granted)
                    OR (l.granted AND l.pid = ANY (pg_blocking_pids(a.pid))))))
    """
)


@dataclass
class Stop:
    """Where and why a run stopped before finishing; the next run continues from there."""

    reason: str
    table: str
    label: str
    after_key: object = None

    def describe(self) -> str:
        where = f" after {self.table}.id {self.after_key}" if self.after_key is not None else ""
        return f"stopped at {self.label}{where}: {self.reason}"


@dataclass
class BatchTiming:
    label: str
    size: int
    rows: int
    seconds: float


def sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", error)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def is_contention(error: BaseException) -> bool:
    return isinstance(error, DBAPIError) and sqlstate(error) in CONTENTION_SQLSTATES


@dataclass
class Pacer:
    """One run's pacing state: batch sizes learnt, time spent waiting, where it stopped."""

    pacing: Pacing = field(default_factory=Pacing)
    log: LogLine | None = None
    sleep: Callable[[float], None] = time.sleep
    stopped: Stop | None = None
    paused_seconds: float = 0.0
    pauses: int = 0
    retries: int = 0
    timings: list[BatchTiming] = field(default_factory=list)
    _waiting_since: float | None = None
    _backoff: str | None = None

    # --- size -------------------------------------------------------------------------

    def floor(self, batch_size: int) -> int:
        # An explicit batch_size below min_batch_size is honoured as the floor.
        return max(1, min(self.pacing.min_batch_size, batch_size))

    def clamp(self, size: int, floor: int) -> int:
        return min(self.pacing.max_batch_size, max(floor, size))

    def next_size(self, size: int, rows: int, seconds: float, floor: int | None = None) -> int:
        """The size that would have taken `target_batch_seconds` at this batch's rate; at
        most twice the last one (one fast batch can be luck), at once smaller if it was slow."""
        if rows <= 0 or seconds <= 0:
            return size
        ideal = int(rows * self.pacing.target_batch_seconds / seconds)
        return self.clamp(
            min(ideal, 2 * size), self.pacing.min_batch_size if floor is None else floor
        )

    def shrink(self, size: int) -> int:
        return max(1, size // 4)

    def record(self, label: str, size: int, rows: int, seconds: float) -> None:
        self.timings.append(BatchTiming(label, size, rows, seconds))
        self._waiting_since = None

    def rate(self, label: str) -> float:
        done = [t for t in self.timings if t.label == label]
        seconds = sum(t.seconds for t in done)
        return sum(t.rows for t in done) / seconds if seconds else 0.0

    @property
    def longest_transaction_s(self) -> float:
        return max((t.seconds for t in self.timings), default=0.0)

    # --- yield ------------------------------------------------------------------------

    def busy_reason(self, engine: Engine, table: str) -> str | None:
        """Why the app's database needs the job to wait now, or None (always None on SQLite,
        which has no replicas and one writer)."""
        if not is_postgres(engine):
            return None
        with engine.connect() as connection:
            lag, waiters = connection.execute(YIELD_CHECK, {"table": table}).one()
        if lag is not None and lag > self.pacing.max_replica_lag_seconds:
            return (
                f"replica replay_lag {lag:.1f}s over max_replica_lag_seconds "
                f"{self.pacing.max_replica_lag_seconds:g}"
            )
        if waiters:
            return f"{waiters} session(s) waiting on a lock on {table}"
        return None

    def wait_turn(self, engine: Engine, table: str, label: str, after_key=None) -> bool:
        """Wait until the database can take the next batch; False (and `stopped` set) when the
        wait passed `max_wait_seconds` or an earlier batch loop of this run stopped."""
        if self.stopped:
            return False
        announced = paused_from = None
        while True:
            reason = self.busy_reason(engine, table) or self._backoff
            self._backoff = None
            if reason is None:
                if paused_from is not None:  # the time paused, checks included
                    self.paused_seconds += time.monotonic() - paused_from
                if announced:
                    self._say(f"{label}: resuming after {self.paused_seconds:.1f}s paused in all")
                return True
            now = time.monotonic()
            if paused_from is None:
                paused_from = now
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since >= self.pacing.max_wait_seconds:
                self.paused_seconds += now - paused_from
                self.stopped = Stop(
                    f"{reason}, still after {self.pacing.max_wait_seconds:g}s (max_wait_seconds)",
                    table,
                    label,
                    after_key,
                )
                self._say(f"{label}: {self.stopped.describe()}; the next run continues")
                return False
            if reason != announced:
                self._say(f"{label}: pausing, {reason}")
                self.pauses += 1
                announced = reason
            self.sleep(self.pacing.poll_seconds)

    def contended(self, error: DBAPIError, label: str) -> None:
        """A batch gave way to the app (lock or statement timeout): pause before retrying."""
        self.retries += 1
        self._backoff = f"batch rolled back ({sqlstate(error)}: {str(error.orig).strip()[:120]})"

    # --- the transaction --------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, engine: Engine) -> Iterator[Connection]:
        """One batch transaction; on Postgres with this run's lock and statement timeouts."""
        with engine.begin() as connection:
            if is_postgres(connection):
                connection.execute(
                    text(
                        "SELECT set_config('lock_timeout', :lock, true), "
                        "set_config('statement_timeout', :statement, true)"
                    ),
                    {
                        "lock": f"{int(self.pacing.lock_timeout_seconds * 1000)}ms",
                        "statement": f"{int(self.pacing.statement_timeout_seconds * 1000)}ms",
                    },
                )
            yield connection

    def _say(self, message: str) -> None:
        if self.log:
            self.log(message)

    def summary(self) -> dict:
        """Run metadata: batches, rate, waits, and where the run stopped if it did."""
        figures = {
            "batch_transactions": len(self.timings),
            "paused_s": round(self.paused_seconds, 1),
            "lock_retries": self.retries,
        }
        if self.timings:
            figures["last_batch_size"] = self.timings[-1].size
        if self.stopped:
            figures["stopped"] = self.stopped.describe()
            if self.stopped.after_key is not None:
                figures["stopped_after_id"] = str(self.stopped.after_key)
        return figures


_ACTIVE: contextvars.ContextVar[Pacer | None] = contextvars.ContextVar("pacer", default=None)


@contextlib.contextmanager
def use_pacer(pacer: Pacer) -> Iterator[Pacer]:
    """Make `pacer` the one every batch loop run inside the block uses."""
    token = _ACTIVE.set(pacer)
    try:
        yield pacer
    finally:
        _ACTIVE.reset(token)


def active_pacer(log: LogLine | None = None) -> Pacer:
    """The pacer of the current run, or a fresh one with the default pacing."""
    return _ACTIVE.get() or Pacer(log=log)


def run_paced(
    engine: Engine,
    table: str,
    label: str,
    batch_size: int,
    work: Callable[[Connection, int], object],
    commit: Callable[[object], tuple[int, bool]],
    *,
    position: Callable[[], object] = lambda: None,
    progress: LogLine | None = None,
    verb: str = "changed",
) -> Pacer:
    """Run batches until done or stopped: `work(connection, size)` does one batch in its own
    transaction; after it commits, `commit(result)` returns (rows handled, more to do).
    `position()` is the key the next batch starts after (reported if the run stops)."""
    pacer = active_pacer(progress)
    floor = pacer.floor(batch_size)
    size = pacer.clamp(batch_size, floor)
    done_rows = 0
    batches = 0
    while pacer.wait_turn(engine, table, label, position()):
        started = time.perf_counter()
        try:
            with pacer.transaction(engine) as connection:
                result = work(connection, size)
        except DBAPIError as error:
            if not is_contention(error):
                raise
            pacer.contended(error, label)
            size = pacer.shrink(size)
            continue
        seconds = time.perf_counter() - started
        rows, more = commit(result)
        if rows == 0 and not more:
            break
        batches += 1
        done_rows += rows
        pacer.record(label, size, rows, seconds)
        next_size = pacer.next_size(size, rows, seconds, floor)
        if progress:
            progress(
                f"{label}: {verb} {done_rows} rows in {batches} batches, "
                f"{pacer.rate(label):,.0f} rows/s; last batch {rows} rows in {seconds:.2f}s, "
                f"next {next_size}"
            )
        if not more:
            break
        size = next_size
    return pacer
