"""Notifications, their email batches, and the real-time outbox."""

from __future__ import annotations

import json

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.seed_data._base import Context, cases, ids, pick
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, NULL_TS, between, null_ts, ts

NOTIFICATION_TITLES = (
    ("New follower", "Someone new is following your channel."),
    ("You received a gift", "A viewer sent you a gift during your stream."),
    ("Your stream is trending", "Your stream is in the top 10 right now."),
    ("Payment received", "Your payment was processed successfully."),
    ("Course reminder", "Pick up where you left off in your course."),
    ("Weekly summary", "Here is what happened on your account this week."),
)
EMAIL_CASES = {
    "pending_due": 0.12,
    "pending_future": 0.10,
    "sent": 0.55,
    "failed_retry_due": 0.05,
    "failed_retry_later": 0.04,
    "dead": 0.03,
    "processing_lease_expired": 0.02,  # a crashed worker's claim
    "processing_active": 0.01,
}


def notifications(ctx: Context) -> list[Frame]:
    rng = ctx.rng("notifications")
    now = ctx.now
    batches = ctx.size("notification_batches")
    codes = pick(rng, batches, EMAIL_CASES)
    scheduled = null_ts(batches)
    status = np.empty(batches, dtype=object)
    attempts = np.zeros(batches, dtype=np.int64)
    claimed, sent, next_attempt = null_ts(batches), null_ts(batches), null_ts(batches)
    error = np.full(batches, None, dtype=object)
    for case, idx in cases(codes, EMAIL_CASES):
        k = len(idx)
        if case == "pending_future":
            scheduled[idx], status[idx] = now + between(rng, MINUTE, DAY, k), "pending"
            continue
        s = now - (
            between(rng, MINUTE, 2 * HOUR, k)
            if case == "pending_due"
            else between(rng, 2 * HOUR, 14 * DAY, k)
        )
        scheduled[idx] = s
        if case == "pending_due":
            status[idx] = "pending"
        elif case == "sent":
            status[idx], attempts[idx] = "sent", 1
            claimed[idx] = s + between(rng, 1, 60, k)
            sent[idx] = claimed[idx] + between(rng, 1, 10, k)
        elif case.startswith("failed"):
            status[idx], attempts[idx] = "failed", rng.integers(1, 4, k)
            error[idx] = "451 4.3.0 temporary failure, try again later"
            claimed[idx] = s + between(rng, 1, 60, k)
            next_attempt[idx] = (
                now - between(rng, MINUTE, 30 * MINUTE, k)
                if case == "failed_retry_due"
                else now + between(rng, MINUTE, HOUR, k)
            )
        elif case == "dead":
            status[idx], attempts[idx] = "dead", 5
            error[idx] = "550 5.1.1 mailbox unavailable"
            claimed[idx] = s + between(rng, HOUR, 2 * HOUR, k)
        else:
            status[idx], attempts[idx] = "processing", 1
            claimed[idx] = now - (
                between(rng, 20 * MINUTE, 2 * HOUR, k)
                if case == "processing_lease_expired"
                else between(rng, 5, 60, k)
            )
            scheduled[idx] = np.minimum(scheduled[idx], claimed[idx] - MINUTE)
    order = np.argsort(scheduled, kind="stable")
    scheduled, status, attempts, claimed, sent, next_attempt, error = (
        a[order] for a in (scheduled, status, attempts, claimed, sent, next_attempt, error)
    )
    batch_user = ctx.random_users(rng, batches)

    # notifications: 1-5 per batch (same user, shortly before it is due), and in-app-only ones
    per_batch = rng.integers(1, 6, batches)
    owner_batch = np.repeat(np.arange(batches), per_batch)
    batch_created = np.minimum(scheduled[owner_batch], now - MINUTE) - between(
        rng, MINUTE, HOUR, len(owner_batch)
    )
    loose = ctx.size("loose_notifications")
    created = np.r_[batch_created, now - between(rng, MINUTE, 30 * DAY, loose)]
    user = np.r_[batch_user[owner_batch], ctx.random_users(rng, loose)]
    batch_of_row = np.r_[owner_batch, np.full(loose, -1)]
    order = np.argsort(created, kind="stable")
    created, user, batch_of_row = created[order], user[order], batch_of_row[order]
    total = len(created)
    notification_ids = ids(total)
    in_batches = np.flatnonzero(batch_of_row >= 0)
    grouped = in_batches[np.argsort(batch_of_row[in_batches], kind="stable")]
    bounds = np.cumsum(per_batch)[:-1]
    id_lists = [json.dumps(chunk.tolist()) for chunk in np.split(notification_ids[grouped], bounds)]
    title_index = rng.integers(0, len(NOTIFICATION_TITLES), total)
    titles = np.array([t for t, _ in NOTIFICATION_TITLES], dtype=object)[title_index]
    bodies = np.array([b for _, b in NOTIFICATION_TITLES], dtype=object)[title_index]
    tracked = (next_attempt != NULL_TS) | (sent != NULL_TS)
    return [
        Frame(
            "notifications",
            {
                "id": notification_ids,
                "user_id": user,
                "title": titles,
                "body": bodies,
                "created_at": ts(created),
            },
        ),
        Frame(
            "notification_email_queue",
            {
                "id": ids(batches),
                "user_id": batch_user,
                "notification_ids": id_lists,
                "scheduled_for": ts(scheduled),
                "status": status,
                "attempts": attempts,
                "claimed_at": ts(claimed),
                "sent_at": ts(sent),
                "error_message": error,
            },
        ),
        # the delivery state the project keeps per batch: backoff and Message-ID
        Frame(
            "email_deliveries",
            {
                "queue_id": ids(batches)[tracked],
                "next_attempt_at": ts(next_attempt[tracked]),
                "message_id": [
                    None if s == NULL_TS else f"<seed-{i}@ops-platform.example.com>"
                    for i, s in zip(ids(batches)[tracked].tolist(), sent[tracked].tolist())
                ],
                "updated_at": ts(np.full(int(tracked.sum()), ctx.now, dtype=np.int64)),
            },
        ),
    ]


REALTIME_EVENTS = (
    (
        "throne:expired",
        lambda i: f"stream:{i % 50 + 1}",
        lambda i: {"throne_id": i, "stream_id": i % 50 + 1},
    ),
    ("festival:activated", lambda i: "global", lambda i: {"festival_id": 1, "theme": "lunar"}),
    ("festival:ended", lambda i: "global", lambda i: {"festival_id": 2, "theme": "halloween"}),
    (
        "bonus:credited",
        lambda i: f"user:{i % 97 + 1}",
        lambda i: {"user_id": i % 97 + 1, "amount": 60},
    ),
)


def realtime_events(ctx: Context) -> list[Frame]:
    """The outbox: mostly published, the newest few not yet (the publisher's work)."""
    rng, n = ctx.draw("realtime_events")
    created = ctx.now - between(rng, 10, 3 * DAY, n)
    created[-min(n, 3) :] = ctx.now - np.arange(min(n, 3), 0, -1) * 30
    created.sort()
    unpublished = (rng.random(n) < 0.1) & (created > ctx.now - HOUR)
    unpublished[-min(n, 3) :] = True
    published = np.where(unpublished, NULL_TS, created + between(rng, 0, 3, n))
    kind = rng.integers(0, len(REALTIME_EVENTS), n).tolist()
    rows = [
        (REALTIME_EVENTS[k][0], REALTIME_EVENTS[k][1](i), json.dumps(REALTIME_EVENTS[k][2](i)))
        for i, k in enumerate(kind, start=1)
    ]
    event, channel, payload = zip(*rows)
    return [
        Frame(
            "realtime_events",
            {
                "id": ids(n),
                "channel": list(channel),
                "event": list(event),
                "payload": list(payload),
                "created_at": ts(created),
                "published_at": ts(published),
            },
        )
    ]
