"""Dead items of the three queues, listed and replayed.

- `email`: notification email batches with status `dead` (attempts used up, or a permanent
  refusal); replay makes them `pending` again with `attempts = 0`, due at once. Only a
  batch that was never sent (`sent_at` and `message_id` empty) is replayed, and the update
  is guarded by `status = 'dead'`: a mail already sent is never sent twice, and two replays
  of the same batch put it back once.
- `payments`: payments that `expired` without a final answer from the provider
  (`last_error` kept); replay makes them `pending` again with `check_count = 0`, due now,
  so the next check asks the provider once more and records its answer.
- `outbox`: `realtime_events` still unpublished an hour after they were written (Redis down
  for long, `realtime_publish` stopped, or a row that cannot be published). They are listed
  with the reason; there is nothing to replay: every `realtime_publish` run retries every
  unpublished event, so once the cause is fixed they go out by themselves.

Every replay (not a dry run) writes one audit row: who, when, which queue, how many.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, Text, and_, bindparam, cast, delete, func, select, update

from ops_platform.db import schema
from ops_platform.db.engine import as_utc

QUEUES = ("email", "payments", "outbox")
REPLAYABLE = ("email", "payments")
OUTBOX_STUCK_AFTER = timedelta(hours=1)
LIST_LIMIT = 1000
_ID_CHUNK = 1000


@dataclass(frozen=True)
class DeadItem:
    queue: str
    id: int
    since: datetime | None  # when it became due (email), was created (payments, outbox)
    attempts: int | None
    last_error: str | None

    def age_s(self, now: datetime) -> float | None:
        return (now - self.since).total_seconds() if self.since else None


@dataclass(frozen=True)
class ReplayResult:
    queue: str
    requested: int  # ids asked for (or found dead, with --all)
    replayed: int  # put back to pending (would be, in a dry run)
    skipped: list[int]  # ids asked for that are not dead (sent, settled, unknown)
    dry_run: bool


# --- what is dead ------------------------------------------------------------------------------


def email_dead_clause():
    q = schema.notification_email_queue.c
    d = schema.email_deliveries.c
    sent_with_message_id = (
        select(d.queue_id).where(d.queue_id == q.id, d.message_id.is_not(None)).exists()
    )
    return and_(q.status == "dead", q.sent_at.is_(None), ~sent_with_message_id)


def _payment_last_error():
    e = schema.payment_check_errors.c
    return (
        select(e.last_error)
        .where(e.payment_id == schema.payments.c.id)
        .scalar_subquery()
        .label("last_error")
    )


def payment_dead_clause():
    p = schema.payments.c
    e = schema.payment_check_errors.c
    return and_(p.status == "expired", select(e.payment_id).where(e.payment_id == p.id).exists())


def outbox_dead_clause(now: datetime):
    e = schema.realtime_events.c
    return and_(e.published_at.is_(None), e.created_at < now - OUTBOX_STUCK_AFTER)


def count_dead_query(queue: str, now: datetime):
    table, clause = _table_and_clause(queue, now)
    return select(func.count()).select_from(table).where(clause)


def count_dead(engine: Engine, queue: str, now: datetime) -> int:
    with engine.connect() as connection:
        return connection.execute(count_dead_query(queue, now)).scalar_one()


def _table_and_clause(queue: str, now: datetime):
    if queue == "email":
        return schema.notification_email_queue, email_dead_clause()
    if queue == "payments":
        return schema.payments, payment_dead_clause()
    if queue == "outbox":
        return schema.realtime_events, outbox_dead_clause(now)
    raise ValueError(f"unknown queue {queue!r}: one of {', '.join(QUEUES)}")


def list_dead(engine: Engine, queue: str, now: datetime, limit: int = LIST_LIMIT) -> list[DeadItem]:
    """The oldest `limit` dead items of `queue`, oldest first."""
    if queue == "email":
        q = schema.notification_email_queue.c
        query = select(q.id, q.scheduled_for, q.attempts, q.error_message).where(
            email_dead_clause()
        )
        order = (q.scheduled_for, q.id)
    elif queue == "payments":
        p = schema.payments.c
        query = select(p.id, p.created_at, p.check_count, _payment_last_error()).where(
            payment_dead_clause()
        )
        order = (p.created_at, p.id)
    elif queue == "outbox":
        return _list_outbox(engine, now, limit)
    else:
        raise ValueError(f"unknown queue {queue!r}: one of {', '.join(QUEUES)}")
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(*order).limit(limit)).all()
    return [DeadItem(queue, row[0], as_utc(row[1]), row[2], row[3]) for row in rows]


def _list_outbox(engine: Engine, now: datetime, limit: int) -> list[DeadItem]:
    from ops_platform.jobs.realtime import message_for

    e = schema.realtime_events.c
    query = (
        select(e.id, e.channel, e.event, cast(e.payload, Text).label("payload"), e.created_at)
        .where(outbox_dead_clause(now))
        .order_by(e.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    items = []
    for row in rows:
        try:
            message_for(row)
            reason = "not published yet: is realtime_publish running, is OPS_REDIS_URL set and up?"
        except ValueError as error:
            reason = f"cannot be published: {error}"
        items.append(DeadItem("outbox", row.id, as_utc(row.created_at), None, reason))
    return items


# --- replay -------------------------------------------------------------------------------------


def replay_dead(
    engine: Engine,
    queue: str,
    now: datetime,
    ids: Sequence[int] | None = None,
    *,
    dry_run: bool = False,
    requested_by: str | None = None,
    run_id: str | None = None,
) -> ReplayResult:
    """Put the dead items `ids` (None: every dead item) of `queue` back to pending, attempts
    reset, in one transaction with its audit row. Items that are not dead are skipped."""
    if queue not in REPLAYABLE:
        raise ValueError(
            f"queue {queue!r} has nothing to replay: every realtime_publish run retries each "
            "unpublished outbox event; `dead list --queue outbox` says why they wait"
            if queue == "outbox"
            else f"unknown queue {queue!r}: one of {', '.join(REPLAYABLE)}"
        )
    if ids is not None and not ids:
        raise ValueError("no ids given: pass --id N ... or --all")
    table, clause = _table_and_clause(queue, now)
    with engine.begin() as connection:
        if ids is None:
            dead_ids = list(connection.execute(select(table.c.id).where(clause)).scalars())
        else:
            dead_ids = []
            wanted = sorted(set(ids))
            for start in range(0, len(wanted), _ID_CHUNK):
                chunk = wanted[start : start + _ID_CHUNK]
                dead_ids += connection.execute(
                    select(table.c.id).where(clause, table.c.id.in_(chunk))
                ).scalars()
        skipped = sorted(set(ids or ()) - set(dead_ids))
        requested = len(set(ids)) if ids is not None else len(dead_ids)
        replayed = 0
        if not dry_run and dead_ids:
            statement = (
                update(table)
                .where(clause, table.c.id.in_(bindparam("chunk", expanding=True)))
                .values(**_back_to_pending(queue, now))
            )
            dead_ids.sort()
            for start in range(0, len(dead_ids), _ID_CHUNK):
                chunk = dead_ids[start : start + _ID_CHUNK]
                replayed += connection.execute(statement, {"chunk": chunk}).rowcount
                _reset_project_state(connection, queue, chunk)
            record_replay(
                connection,
                queue=queue,
                requested=requested,
                replayed=replayed,
                item_ids=dead_ids,
                requested_by=requested_by or who_am_i(),
                at=now,
                run_id=run_id,
            )
    return ReplayResult(
        queue=queue,
        requested=requested,
        replayed=len(dead_ids) if dry_run else replayed,
        skipped=skipped,
        dry_run=dry_run,
    )


def _back_to_pending(queue: str, now: datetime) -> dict:
    if queue == "email":
        return {"status": "pending", "attempts": 0, "claimed_at": None, "error_message": None}
    return {"status": "pending", "check_count": 0, "next_check_at": now, "settled_at": None}


def _reset_project_state(connection, queue: str, ids: list[int]) -> None:
    """The project's own state of replayed items: no backoff left, no stale error."""
    if queue == "email":
        d = schema.email_deliveries
        connection.execute(update(d).where(d.c.queue_id.in_(ids)).values(next_attempt_at=None))
    else:
        e = schema.payment_check_errors
        connection.execute(delete(e).where(e.c.payment_id.in_(ids)))


def who_am_i() -> str:
    """The operator: `OPS_OPERATOR` if set (a shared account, a CI job), else the OS user."""
    try:
        return os.environ.get("OPS_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


def record_replay(connection, **audit) -> None:
    """One audit row per replay (who, when, queue, how many, which ids)."""
    table = schema.dead_item_replays
    connection.execute(
        table.insert().values(
            queue=audit["queue"],
            requested=audit["requested"],
            replayed=audit["replayed"],
            item_ids=json.dumps(audit["item_ids"][:10_000]),
            requested_by=audit["requested_by"][:200],
            replayed_at=audit["at"],
            run_id=audit["run_id"],
        )
    )


# --- the command line ---------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m"


def print_dead_list(database_url: str, queues: Sequence[str], limit: int) -> int:
    from tabulate import tabulate

    from ops_platform.db.engine import make_engine, utcnow

    engine = make_engine(database_url)
    now = utcnow()
    try:
        for queue in queues:
            total = count_dead(engine, queue, now)
            items = list_dead(engine, queue, now, limit=limit) if total else []
            shown = f", oldest {len(items)} shown" if len(items) < total else ""
            print(f"{queue}: {total} dead{shown}")
            if items:
                rows = [
                    [
                        item.id,
                        _age(item.age_s(now)),
                        "-" if item.attempts is None else item.attempts,
                        (item.last_error or "").replace("\n", " ")[:120],
                    ]
                    for item in items
                ]
                print(tabulate(rows, headers=["id", "age", "attempts", "last error"]))
            print()
    finally:
        engine.dispose()
    return 0


def print_replay(database_url: str, queue: str, ids: Sequence[int] | None, dry_run: bool) -> int:
    from ops_platform.db.engine import make_engine, utcnow

    engine = make_engine(database_url)
    try:
        result = replay_dead(engine, queue, utcnow(), ids, dry_run=dry_run)
    except ValueError as error:
        print(f"ops-platform: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    verb = "would put" if dry_run else "put"
    print(f"{queue}: {verb} {result.replayed} dead items back to pending (attempts reset)")
    if result.skipped:
        print(f"not dead (already sent or settled, or unknown), left alone: {result.skipped}")
    if not dry_run and result.replayed:
        print(f"audited in dead_item_replays as {who_am_i()}")
    return 0
