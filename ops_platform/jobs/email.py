"""`email_queue`: send the due batches of `notification_email_queue`.

A batch is due when it is `pending` and scheduled, `failed` and its backoff has passed, or
`processing` with a lease older than `lease_seconds` (a crashed run's batch comes back).
Due batches are claimed in one statement — `FOR UPDATE SKIP LOCKED` on Postgres, a single
guarded UPDATE under SQLite's write lock — so two runs never take the same batch. Each
batch becomes one email to its user with the stable Message-ID
`<notification-batch-{id}@ops-platform>`; then `sent`, or `failed` with the error and a
backoff, `dead` after `max_attempts` (or at once for a permanent refusal / a bad row).
"""

import contextlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

import dagster as dg
from pydantic import Field
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
from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.db.engine import is_postgres, upsert, utcnow
from ops_platform.jobs._common import (
    add_earlier_counts,
    backoff_seconds,
    count_done,
    lock_held_output,
    one_op_job,
    singleton,
    transient_retries,
)
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database
from ops_platform.resources.mailer import Mailer, MailError, MailServerUnavailable, plain_text_email
from ops_platform.schedules.catalog import op_tags

queue = schema.notification_email_queue
# The project's delivery state per batch (backoff, Message-ID), beside the app's row.
deliveries = schema.email_deliveries

RETRY_BASE_SECONDS = 60
RETRY_CAP_SECONDS = 3600
SERVER_RETRIES = 3  # run-level retries when the mail server cannot be reached


class EmailQueueConfig(dg.Config):
    max_batches: int = Field(default=50, gt=0, le=100_000, description="Batches claimed per run.")
    lease_seconds: int = Field(
        default=300, ge=10, description="A claim older than this is a crashed run's; it comes back."
    )
    max_attempts: int = Field(default=5, ge=1, description="Attempts before a batch is dead.")
    dry_run: bool = Field(
        default=False, description="Count the due batches; claim and send nothing."
    )


@dataclass
class ClaimedBatch:
    id: int
    user_id: int | None
    notification_ids_json: str | None
    attempts: int


@dataclass
class EmailQueueResult:
    due: int = 0
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0
    lease_lost: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def metadata(self, dry_run: bool = False) -> dict:
        return {
            "dry_run": dry_run,
            "due": self.due,
            "claimed": self.claimed,
            "sent": self.sent,
            "failed": self.failed,
            "dead": self.dead,
            "released": self.released,
            "lease_lost": self.lease_lost,
            "duration_s": round(self.seconds, 3),
            "mails_per_s": round(self.sent / self.seconds, 1)
            if self.seconds and self.sent
            else 0.0,
        }


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


# --- building the messages ------------------------------------------------------------------


class BadBatch(ValueError):
    """A batch that can never be sent as it is (missing user, address or notifications)."""


def parse_notification_ids(batch: ClaimedBatch) -> list[int]:
    raw = batch.notification_ids_json
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(value, str):  # JSON stored as a JSON string
            value = json.loads(value)
        ids = [int(item) for item in value]
    except (TypeError, ValueError):
        raise BadBatch(
            f"batch {batch.id}: notification_ids {raw!r} is not a JSON list of ids"
        ) from None
    if not ids:
        raise BadBatch(f"batch {batch.id}: notification_ids is empty")
    return ids


def _chunks(values: list, size: int = 5000) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def load_recipients_and_notifications(
    engine: Engine, batches: list[ClaimedBatch]
) -> tuple[dict, dict]:
    """Email address per user id and notification row per id, for every claimed batch at once."""
    user_ids = sorted({b.user_id for b in batches if b.user_id is not None})
    notification_ids: set[int] = set()
    for batch in batches:
        with contextlib.suppress(BadBatch):
            notification_ids.update(parse_notification_ids(batch))
    users, notes = {}, {}
    n = schema.notifications
    with engine.connect() as connection:
        for chunk in _chunks(user_ids):
            users.update(
                connection.execute(
                    select(schema.users.c.id, schema.users.c.email).where(
                        schema.users.c.id.in_(chunk)
                    )
                ).all()
            )
        for chunk in _chunks(sorted(notification_ids)):
            for row in connection.execute(
                select(n.c.id, n.c.user_id, n.c.title, n.c.body, n.c.created_at).where(
                    n.c.id.in_(chunk)
                )
            ):
                notes[row.id] = row
    return users, notes


def batch_message_id(batch_id: int) -> str:
    return f"<notification-batch-{batch_id}@ops-platform>"


def build_batch_email(
    batch: ClaimedBatch, users: dict, notes: dict, mail_from: str, now: datetime
) -> EmailMessage:
    """One email listing the batch's notifications; raises BadBatch for a batch that cannot be sent."""
    if batch.user_id is None:
        raise BadBatch(f"batch {batch.id}: no user_id")
    if batch.user_id not in users:
        raise BadBatch(f"batch {batch.id}: user {batch.user_id} does not exist")
    address = (users[batch.user_id] or "").strip()
    if "@" not in address or any(c.isspace() for c in address):
        raise BadBatch(f"batch {batch.id}: user {batch.user_id} has no email address ({address!r})")
    # Only the user's own notifications (or broadcast ones): never mail someone else's.
    wanted = parse_notification_ids(batch)
    found = [notes[i] for i in wanted if i in notes and notes[i].user_id in (None, batch.user_id)]
    if not found:
        raise BadBatch(
            f"batch {batch.id}: none of notifications {wanted[:10]} exist for user {batch.user_id}"
        )

    lines = []
    for note in found:
        lines.append(f"• {note.title}")
        if note.body:
            lines.append(f"  {note.body}")
        lines.append("")
    return plain_text_email(
        message_id=batch_message_id(batch.id),
        sender=mail_from,
        to=address,
        subject=found[0].title if len(found) == 1 else f"You have {len(found)} new notifications",
        body="\n".join(lines).rstrip() + "\n",
        date=now,
    )


# --- recording outcomes ------------------------------------------------------------------------


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


# --- the rule -------------------------------------------------------------------------------------


def send_due_emails(
    engine: Engine,
    mailer: Mailer,
    now: datetime,
    *,
    max_batches: int = 50,
    lease_seconds: int = 300,
    max_attempts: int = 5,
    log: LogLine | None = None,
) -> EmailQueueResult:
    """Claim up to `max_batches` due batches and send each; see the module docstring.

    Raises MailServerUnavailable (after giving the unsent claims back) when the mail
    server cannot be reached: an outage must not use up the batches' attempts.
    """
    log = log or (lambda _message: None)
    started = time.monotonic()
    result = EmailQueueResult()
    batches = claim_due_batches(engine, now, max_batches, lease_seconds)
    count_done(result, claimed=len(batches))
    if not batches:
        result.seconds = time.monotonic() - started
        return result
    claimed_at = now
    users, notes = load_recipients_and_notifications(engine, batches)

    def at() -> datetime:  # `now` moved on by the time this run has taken
        return now + timedelta(seconds=time.monotonic() - started)

    with outcome_connection(engine) as marks:

        def record_failure(batch: ClaimedBatch, error: str, permanent: bool) -> None:
            status = mark_failed(marks, batch, claimed_at, at(), error, max_attempts, permanent)
            if status is None:
                count_done(result, lease_lost=1)
            else:
                count_done(result, **{status: 1})
                result.errors.append(error)

        for position, batch in enumerate(batches):
            if time.monotonic() - started > lease_seconds * 0.8:
                # Near the end of the lease another run may take these: hand them back now.
                count_done(result, released=release(marks, batches[position:], claimed_at))
                log(f"lease nearly over: {len(batches) - position} batches handed back")
                break
            try:
                message = build_batch_email(batch, users, notes, mailer.mail_from, at())
            except BadBatch as bad:
                record_failure(batch, str(bad), permanent=True)
                continue
            try:
                mailer.send(message)
            except MailServerUnavailable as down:
                # The message in hand may be what makes the server hang up: it pays an attempt.
                if down.during_send:
                    record_failure(batch, str(down), permanent=False)
                    rest = batches[position + 1 :]
                else:
                    rest = batches[position:]
                count_done(result, released=release(marks, rest, claimed_at))
                result.seconds = time.monotonic() - started
                log(
                    f"mail server unavailable after {result.sent} sent; {result.released} batches handed back: {down}"
                )
                raise
            except MailError as error:
                record_failure(batch, str(error), permanent=error.permanent)
                continue
            if mark_sent(marks, batch, claimed_at, at()):
                count_done(result, sent=1)
            else:
                count_done(result, lease_lost=1)
    result.seconds = time.monotonic() - started
    return result


# --- Dagster -------------------------------------------------------------------------------------


@dg.op(
    tags=op_tags("email_queue"),
    description="Claim due notification email batches, send them, record sent/failed/dead.",
)
def process_email_queue(
    context: dg.OpExecutionContext, config: EmailQueueConfig, database: Database, mailer: Mailer
) -> dg.Output[int]:
    now = utcnow()
    if config.dry_run:
        due = count_due(database.engine, now, config.lease_seconds)
        result = EmailQueueResult(due=due)
        context.log.info(
            f"dry run: {due} batches due; a run would send up to {min(due, config.max_batches)}"
        )
        return dg.Output(
            0,
            metadata={**result.metadata(dry_run=True), "would_send": min(due, config.max_batches)},
        )
    with transient_retries(context), singleton(context, database) as acting:
        if not acting:
            return lock_held_output("another email_queue run is sending", sent=0)
        try:
            result = send_due_emails(
                database.engine,
                mailer,
                now,
                max_batches=config.max_batches,
                lease_seconds=config.lease_seconds,
                max_attempts=config.max_attempts,
                log=context.log.warning,
            )
        except MailServerUnavailable as down:
            if context.retry_number < SERVER_RETRIES:
                wait = backoff_seconds(context.retry_number, base=10)
                context.log.warning(f"{down}; retry {context.retry_number + 1} in {wait:.0f}s")
                raise dg.RetryRequested(max_retries=SERVER_RETRIES, seconds_to_wait=wait) from down
            raise dg.Failure(
                description=f"mail server unavailable ({mailer.target}): {down}"
            ) from down
    retried = add_earlier_counts(context, result)
    for error in result.errors[:20]:
        context.log.warning(error)
    context.log.info(
        f"email_queue: {result.claimed} claimed, {result.sent} sent, {result.failed} failed, "
        f"{result.dead} dead via {mailer.target} in {result.seconds:.2f}s"
    )
    metadata = result.metadata() | job_bad_rows(context, database.engine) | retried
    return dg.Output(result.sent, metadata=metadata)


email_queue = one_op_job("email_queue", process_email_queue, __doc__.splitlines()[0])


defs = dg.Definitions(jobs=[email_queue])
