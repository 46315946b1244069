"""`realtime_publish` (sensor-driven).

Jobs that change what users see (throne expired, festival activated/ended, bonus credited)
write a row to the `realtime_events` outbox in the same transaction as their change. This
job publishes the unpublished rows to Redis pub/sub — channel = the row's `channel`,
message = JSON `{"event", "payload", "id", "created_at"}` — in id order, then marks them
`published_at`.

- Ordered batches: each batch is read in id order, published in one pipeline, and marked
  in the same transaction. A Redis failure rolls the batch back: the rows stay in the
  outbox for the next run (none lost).
- Never twice at once: a singleton lock per job, and on Postgres the batch rows are also
  claimed `FOR UPDATE SKIP LOCKED`, so no other writer can mark them meanwhile.
- A row that cannot be published (payload that is not JSON, empty channel) is skipped,
  counted and left in the outbox; it does not block the rows after it.
- With no Redis configured (`OPS_REDIS_URL` unset) nothing is published: the job says so,
  reports how many events wait, and succeeds.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine, Text, bindparam, cast, func, select, update

from ops_platform.db import schema
from ops_platform.db.bad_rows import job_bad_rows
from ops_platform.db.engine import as_utc, is_postgres, utcnow
from ops_platform.jobs._common import (
    MAX_TRANSIENT_RETRIES,
    add_earlier_counts,
    backoff_seconds,
    count_done,
    job_op,
    one_op_job,
)
from ops_platform.log_line import LogLine
from ops_platform.resources.database import Database
from ops_platform.resources.realtime import RealtimePublisher, RealtimeUnavailable


@dataclass
class PublishReport:
    published: int = 0
    batches: int = 0
    skipped_bad: list[int] = field(default_factory=list)  # ids of rows that cannot be published
    waiting: int = 0  # unpublished rows left in the outbox


def message_for(row) -> str:
    """The JSON message of one outbox row; ValueError if the row cannot be published."""
    if not row.channel or not row.channel.strip():
        raise ValueError("empty channel")
    # The payload is read as text so that one malformed value fails only its own row.
    payload = json.loads(row.payload) if row.payload else None
    created_at = as_utc(row.created_at)
    return json.dumps(
        {
            "event": row.event,
            "payload": payload,
            "id": row.id,
            "created_at": created_at.isoformat() if created_at else None,
        },
        separators=(",", ":"),
    )


def count_unpublished(engine: Engine) -> int:
    e = schema.realtime_events.c
    with engine.connect() as connection:
        return connection.execute(select(func.count()).where(e.published_at.is_(None))).scalar_one()


def max_unpublished_id(engine: Engine) -> int | None:
    e = schema.realtime_events.c
    with engine.connect() as connection:
        return connection.execute(select(func.max(e.id)).where(e.published_at.is_(None))).scalar()


def publish_outbox(
    engine: Engine,
    publisher: RealtimePublisher,
    *,
    batch_size: int = 500,
    max_events: int = 50_000,
    now: Callable[[], datetime] = utcnow,
    log: LogLine | None = None,
) -> PublishReport:
    """Publish unpublished events in id order, `batch_size` per transaction, at most
    `max_events` a call. Raises `RealtimeUnavailable` if Redis fails (that batch stays)."""
    events = schema.realtime_events
    e = events.c
    report = PublishReport()
    after = 0
    while report.published + len(report.skipped_bad) < max_events:
        limit = min(batch_size, max_events - report.published - len(report.skipped_bad))
        query = (
            select(e.id, e.channel, e.event, cast(e.payload, Text).label("payload"), e.created_at)
            .where(e.published_at.is_(None), e.id > after)
            .order_by(e.id)
            .limit(limit)
        )
        with engine.begin() as connection:
            if is_postgres(connection):
                query = query.with_for_update(skip_locked=True)
            rows = connection.execute(query).all()
            if not rows:
                break
            after = rows[-1].id
            messages, ids = [], []
            for row in rows:
                try:
                    messages.append((row.channel, message_for(row)))
                    ids.append(row.id)
                except ValueError as error:
                    report.skipped_bad.append(row.id)
                    if log:
                        log(f"realtime event {row.id} skipped, left in the outbox: {error}")
            publisher.publish_many(messages)
            if ids:
                connection.execute(
                    update(events)
                    .where(e.id.in_(bindparam("ids", expanding=True)), e.published_at.is_(None))
                    .values(published_at=now()),
                    {"ids": ids},
                )
        count_done(report, published=len(ids), batches=1)
        if log:
            log(f"published {report.published} realtime events (up to id {after})")
    report.waiting = count_unpublished(engine)
    return report


# Its fields are `publish_outbox`'s options, by the same names.
class RealtimePublishConfig(dg.Config):
    batch_size: int = Field(
        default=500, gt=0, le=10_000, description="Events per pipeline and transaction."
    )
    max_events: int = Field(default=50_000, gt=0, description="At most this many events per run.")


def _redis_not_configured(context: dg.OpExecutionContext, database: Database) -> dg.Output[int]:
    """Nothing is published; the run succeeds and reports how many events wait."""
    waiting = count_unpublished(database.engine)
    context.log.info(
        f"no Redis configured (OPS_REDIS_URL is not set): {waiting} realtime events stay in the outbox"
    )
    return dg.Output(0, metadata={"published": 0, "waiting": waiting, "redis": "not configured"})


@job_op(
    "realtime_publish",
    "Publish the realtime_events outbox to Redis pub/sub in order and mark the rows published.",
    when_lock_held={"published": 0},
)
def publish_realtime_events(
    context: dg.OpExecutionContext,
    config: RealtimePublishConfig,
    database: Database,
    realtime: RealtimePublisher,
) -> dg.Output[int]:
    if not realtime.enabled:
        return _redis_not_configured(context, database)
    try:
        report = publish_outbox(
            database.engine, realtime, **config.model_dump(), log=context.log.debug
        )
    except RealtimeUnavailable as error:
        if context.retry_number < MAX_TRANSIENT_RETRIES:
            wait = backoff_seconds(context.retry_number)
            context.log.warning(
                f"{error}; unpublished events stay in the outbox, retry in {wait:.1f}s"
            )
            raise dg.RetryRequested(
                max_retries=MAX_TRANSIENT_RETRIES, seconds_to_wait=wait
            ) from error
        raise
    retried = add_earlier_counts(context, report)
    if report.skipped_bad:
        context.log.warning(
            f"{len(report.skipped_bad)} realtime events cannot be published and stay in the outbox: "
            f"ids {report.skipped_bad[:20]}"
        )
    context.log.info(
        f"published {report.published} realtime events to {realtime.safe_url} in {report.batches} batches; "
        f"{report.waiting} still waiting"
    )
    metadata = {
        "published": report.published,
        "batches": report.batches,
        "skipped_bad_rows": len(report.skipped_bad),
        "waiting": report.waiting,
        **job_bad_rows(context, database.engine),
        **retried,
    }
    return dg.Output(report.published, metadata=metadata)


realtime_publish = one_op_job(
    "realtime_publish",
    publish_realtime_events,
    "Publish the realtime_events outbox to Redis pub/sub.",
)


defs = dg.Definitions(jobs=[realtime_publish])
