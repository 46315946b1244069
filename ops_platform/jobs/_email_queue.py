"""The rows of `notification_email_queue`: which batches are due, claiming them under a
lease, and marking each claimed batch sent, failed or dead (or giving it back).

Due batches are claimed in one statement — `FOR UPDATE SKIP LOCKED` on Postgres, a single
guarded UPDATE under SQLite's write lock — so two runs never take the same batch. A mark
applies only while the claim is still the run's own: a batch re-claimed after its lease
expired is the other run's.
"""

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from ops_platform.db import schema
from ops_platform.db.engine import is_postgres, upsert, utcnow

queue = schema.notification_email_queue
# The project's delivery state per batch (backoff, Message-ID), beside the app's row.
deliveries = schema.email_deliveries

RETRY_BASE_SECONDS = 60
RETRY_CAP_SECONDS = 3600


@dataclass
class ClaimedBatch:
    id: int
    user_id: int | None
    notification_ids_json: str | None
    attempts: int


# --- which batches are due, and claiming them ----------------------------------------------


def due_clause(now: datetime, lease_seconds: int):
    """Pending/failed batches whose time has come, and processing ones whose lease expired."""
    backing_off = (
        select(deliveries.c.queue_id)
        .where(deliveries.c.queue_id == queue.c.id, deliveries.c.next_attempt_at > now)
        .exists()
    )
    waiting = and_(
        queue.c.status.in_(("pending", "failed")),
        queue.c.scheduled_for <= now,
        ~backing_off,
    )
    abandoned = and_(
        queue.c.status == "processing",
        or_(
            queue.c.claimed_at.is_(None),
            queue.c.claimed_at < now - timedelta(seconds=lease_seconds),
        ),
    )
    return or_(waiting, abandoned)


@contextlib.contextmanager
def _connection(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as connection:
            yield connection


def count_due(
    bind: Engine | Connection, now: datetime, lease_seconds: int = 300, cap: int | None = None
) -> int:
    """Number of due batches (counting stops at `cap`, which keeps the backlog check cheap)."""
    due = select(queue.c.id).where(due_clause(now, lease_seconds))
    if cap is not None:
        due = due.limit(cap)
    with _connection(bind) as connection:
        return connection.execute(select(func.count()).select_from(due.subquery())).scalar_one()


def claim_due_batches(
    engine: Engine, now: datetime, limit: int, lease_seconds: int = 300
) -> list[ClaimedBatch]:
    """Claim up to `limit` due batches, oldest first: status `processing`, `claimed_at = now`,
    one more attempt. One statement, so no two callers ever get the same batch."""
    due = due_clause(now, lease_seconds)
    oldest = select(queue.c.id).where(due).order_by(queue.c.scheduled_for, queue.c.id).limit(limit)
    if is_postgres(engine):
        # Rows another claimer holds are skipped instead of waited for. (SQLite has no row
        # locks: the UPDATE runs under the database write lock, and the guard below re-checks.)
        oldest = oldest.with_for_update(skip_locked=True)
    # A CTE is evaluated once; an IN (subquery … LIMIT) may be re-run per row on Postgres
    # and then claim more than `limit` rows.
    chosen = oldest.cte("chosen")
    statement = (
        update(queue)
        .where(queue.c.id == chosen.c.id, due)
        .values(status="processing", claimed_at=now, attempts=queue.c.attempts + 1)
        # The ids as text: a malformed value is a bad row to report, not a crash here.
        .returning(
            queue.c.id, queue.c.user_id, cast(queue.c.notification_ids, Text), queue.c.attempts
        )
    )
    with engine.begin() as connection:
        rows = connection.execute(statement).all()
    return sorted((ClaimedBatch(*row) for row in rows), key=lambda batch: batch.id)


# --- recording outcomes ------------------------------------------------------------------------


def batch_message_id(batch_id: int) -> str:
    """The batch's stable Message-ID: a batch sent again (its mark lost) carries the same."""
    return f"<notification-batch-{batch_id}@ops-platform>"


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: about 1, 2, 4, 8… minutes, at most an hour."""
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _ours(batch: ClaimedBatch, claimed_at: datetime):
    """Still this run's claim: a batch re-claimed after lease expiry is not ours to mark."""
    return and_(
        queue.c.id == batch.id, queue.c.status == "processing", queue.c.claimed_at == claimed_at
    )


@contextlib.contextmanager
def outcome_connection(engine: Engine) -> Iterator[Connection]:
    """One connection for a run's outcome marks, in autocommit: each mark is one guarded
    UPDATE, atomic by itself, so one round trip per mail and no pool checkout and ping.
    On Postgres its commits do not wait for the WAL flush: an fsync per mail would cap the
    rate, and a mark lost in a database crash only means the batch comes back after its
    lease (a duplicate carrying the same Message-ID)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        postgres = is_postgres(engine)
        if postgres:
            connection.execute(text("SET synchronous_commit = off"))
        try:
            yield connection
        finally:
            if postgres:  # the connection goes back to the pool: restore the default
                with contextlib.suppress(
                    SQLAlchemyError
                ):  # a broken connection is discarded anyway
                    connection.execute(text("RESET synchronous_commit"))


@contextlib.contextmanager
def _transaction(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            yield connection
        return
    try:
        yield bind
        bind.commit()
    except BaseException:
        bind.rollback()
        raise


def _mark(
    connection: Connection,
    batch: ClaimedBatch,
    claimed_at: datetime,
    values: dict,
    delivery: dict,
) -> bool:
    """Set the app row's `values` if the claim is still ours, and the project's delivery
    state of the batch with it. On Postgres one statement (one round trip per mail)."""
    marked = update(queue).where(_ours(batch, claimed_at)).values(**values)
    delivery = {**delivery, "updated_at": delivery.get("updated_at") or utcnow()}
    if is_postgres(connection):
        from sqlalchemy.dialects.postgresql import insert

        changed = marked.returning(queue.c.id).cte("marked")
        columns = list(delivery)
        source = select(
            changed.c.id, *(literal(delivery[name], deliveries.c[name].type) for name in columns)
        )
        statement = insert(deliveries).from_select(["queue_id", *columns], source)
        statement = statement.on_conflict_do_update(
            index_elements=["queue_id"], set_={name: statement.excluded[name] for name in columns}
        ).returning(deliveries.c.queue_id)
        return len(connection.execute(statement).all()) == 1
    if connection.execute(marked).rowcount != 1:
        return False
    upsert(connection, deliveries, [{"queue_id": batch.id, **delivery}], ("queue_id",))
    return True


def mark_sent(
    bind: Engine | Connection, batch: ClaimedBatch, claimed_at: datetime, sent_at: datetime
) -> bool:
    with _transaction(bind) as connection:
        return _mark(
            connection,
            batch,
            claimed_at,
            {"status": "sent", "sent_at": sent_at, "error_message": None},
            {"next_attempt_at": None, "message_id": batch_message_id(batch.id)},
        )


def mark_failed(
    bind: Engine | Connection,
    batch: ClaimedBatch,
    claimed_at: datetime,
    now: datetime,
    error: str,
    max_attempts: int,
    permanent: bool,
) -> str | None:
    """`failed` with a backoff, or `dead` after the last attempt; the error is kept either way.
    Returns the new status, or None if the claim was lost."""
    status = "dead" if permanent or batch.attempts >= max_attempts else "failed"
    next_attempt = now + retry_delay(batch.attempts) if status == "failed" else None
    with _transaction(bind) as connection:
        changed = _mark(
            connection,
            batch,
            claimed_at,
            {"status": status, "error_message": error[:2000]},
            {"next_attempt_at": next_attempt, "message_id": None, "updated_at": now},
        )
    return status if changed else None


def release(bind: Engine | Connection, batches: list[ClaimedBatch], claimed_at: datetime) -> int:
    """Give unsent claims back untouched (the attempt is not counted): due again at once."""
    if not batches:
        return 0
    with _transaction(bind) as connection:
        return connection.execute(
            update(queue)
            .where(
                queue.c.id.in_([b.id for b in batches]),
                queue.c.status == "processing",
                queue.c.claimed_at == claimed_at,
            )
            .values(status="pending", claimed_at=None, attempts=queue.c.attempts - 1)
        ).rowcount
