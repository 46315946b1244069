"""Streams and their events, rankings, reputation, thrones, festivals and gifts."""

from __future__ import annotations

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.seed_data._base import Context, cases, ids, nullable, pick
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, between, null_ts, ts

STREAM_CASES = {"live": 0.15, "ended_recently": 0.25, "ended_days_ago": 0.60}
STREAM_TOPICS = (
    "Speedrun",
    "Late night chill",
    "Cooking live",
    "Q&A",
    "Ranked grind",
    "Art stream",
    "Music jam",
    "Coding session",
    "Just chatting",
    "Tournament",
)
STREAM_EVENT_KINDS = {"view": 0.62, "chat": 0.25, "gift": 0.04, "follow": 0.06, "share": 0.03}
GIFT_VALUES = (1, 5, 10, 50, 100, 500)


def streams(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("streams")
    now = ctx.now
    started, ended = null_ts(n), null_ts(n)
    codes = pick(rng, n, STREAM_CASES)
    for case, idx in cases(codes, STREAM_CASES):
        k = len(idx)
        if case == "live":
            started[idx] = now - between(rng, 5 * MINUTE, 6 * HOUR, k)
        else:
            e = now - (
                between(rng, 5 * MINUTE, DAY, k)
                if case == "ended_recently"
                else between(rng, DAY, 7 * DAY, k)
            )
            started[idx], ended[idx] = e - between(rng, 20 * MINUTE, 4 * HOUR, k), e
    order = np.argsort(started, kind="stable")
    started, ended, live = started[order], ended[order], (codes == 0)[order]
    creators = ctx.random_users(rng, max(1, n // 3))
    owner = creators[rng.integers(0, len(creators), n)]
    ctx.streams = {
        "started": started,
        "ended": np.where(live, now, ended),
        "live": live,
        "owner": owner,
    }
    titles = [
        f"{STREAM_TOPICS[t]} #{i}"
        for t, i in zip(rng.integers(0, len(STREAM_TOPICS), n).tolist(), range(1, n + 1))
    ]
    return [
        Frame(
            "streams",
            {
                "id": ids(n),
                "owner_id": owner,
                "title": titles,
                "is_live": live,
                "started_at": ts(started),
                "ended_at": ts(ended),
            },
        )
    ]


def stream_events(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("stream_events")
    s = ctx.streams
    streams_n = len(s["started"])
    popularity = rng.lognormal(0, 1.0, streams_n) * (s["ended"] - s["started"])
    stream = rng.choice(streams_n, n, p=popularity / popularity.sum())
    created = between(rng, s["started"][stream], s["ended"][stream])
    order = np.argsort(created, kind="stable")
    stream, created = stream[order], created[order]
    kind_code = pick(rng, n, STREAM_EVENT_KINDS)[rng.permutation(n)]
    gift = kind_code == list(STREAM_EVENT_KINDS).index("gift")
    value = np.where(
        gift, rng.choice(GIFT_VALUES, n, p=[0.35, 0.25, 0.2, 0.12, 0.06, 0.02]), 1
    ).astype(float)
    anonymous_view = (kind_code == 0) & (rng.random(n) < 0.1)
    return [
        Frame(
            "stream_events",
            {
                "id": ids(n),
                "stream_id": stream.astype(np.int64) + 1,
                "user_id": nullable(ctx.random_users(rng, n), anonymous_view),
                "kind": np.array(list(STREAM_EVENT_KINDS), dtype=object)[kind_code],
                "value": value,
                "created_at": ts(created),
            },
        )
    ]


def stream_rankings(ctx: Context) -> list[Frame]:
    """Stale rankings from a day ago for a few streams that have long ended."""
    rng = ctx.rng("stream_rankings")
    ended_long_ago = np.flatnonzero(ctx.streams["ended"] < ctx.now - DAY)
    chosen = (
        np.sort(rng.permutation(ended_long_ago)[: max(1, len(ended_long_ago) // 10)])
        if len(ended_long_ago)
        else []
    )
    k = len(chosen)
    score = np.sort(rng.uniform(1, 500, k))[::-1].round(2)
    return [
        Frame(
            "stream_rankings",
            {
                "stream_id": np.asarray(chosen, dtype=np.int64) + 1,
                "score": score,
                "rank": np.arange(1, k + 1, dtype=np.int64),
                "computed_at": ts(np.full(k, ctx.now - DAY - 2 * HOUR, dtype=np.int64)),
            },
        )
    ]


REPUTATION_KINDS = {  # kind: (weight of occurrence, reputation weight)
    "email_verified": (0.08, 5.0),
    "stream_completed": (0.25, 2.0),
    "gift_received": (0.25, 1.0),
    "positive_review": (0.15, 3.0),
    "report_dismissed": (0.05, 1.0),
    "reported": (0.12, -3.0),
    "spam_flagged": (0.07, -5.0),
    "chargeback": (0.03, -10.0),
}


def reputation_events(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("reputation_events")
    created = np.sort(
        ctx.now - rng.exponential(60 * DAY, n).clip(MINUTE, 365 * DAY).astype(np.int64)
    )
    codes = pick(rng, n, {kind: spec[0] for kind, spec in REPUTATION_KINDS.items()})[
        rng.permutation(n)
    ]
    weights = np.array([spec[1] for spec in REPUTATION_KINDS.values()])[codes]
    return [
        Frame(
            "reputation_events",
            {
                "id": ids(n),
                "user_id": ctx.users_before(rng, created),
                "kind": np.array(list(REPUTATION_KINDS), dtype=object)[codes],
                "weight": weights,
                "created_at": ts(created),
            },
        )
    ]


THRONE_CASES = {"active_past_expiry": 0.3, "active": 0.3, "ended": 0.4}


def thrones(ctx: Context) -> list[Frame]:
    rng = ctx.rng("thrones")
    s = ctx.streams
    n = max(6, len(s["started"]) // 3)
    expires = null_ts(n)
    is_active = np.ones(n, dtype=bool)
    for case, idx in cases(pick(rng, n, THRONE_CASES), THRONE_CASES):
        k = len(idx)
        if case == "active_past_expiry":
            expires[idx] = ctx.now - between(rng, MINUTE, 2 * HOUR, k)
        elif case == "active":
            expires[idx] = ctx.now + between(rng, 5 * MINUTE, HOUR, k)
        else:
            expires[idx], is_active[idx] = ctx.now - between(rng, 2 * HOUR, 7 * DAY, k), False
    order = np.argsort(expires, kind="stable")
    expires, is_active = expires[order], is_active[order]
    started = expires - HOUR
    live_streams = np.flatnonzero(s["live"]) + 1
    stream = rng.integers(1, len(s["started"]) + 1, n)
    if len(live_streams):
        stream = np.where(is_active, live_streams[rng.integers(0, len(live_streams), n)], stream)
    return [
        Frame(
            "thrones",
            {
                "id": ids(n),
                "stream_id": stream.astype(np.int64),
                "holder_id": ctx.random_users(rng, n),
                "total_coins": (rng.lognormal(6, 1, n)).astype(np.int64),
                "started_at": ts(started),
                "expires_at": ts(expires),
                "is_active": is_active,
            },
        )
    ]


# (name, theme, start in days from now, end in days from now, is_active as the app left it)
FESTIVALS = (
    ("Lunar New Year Festival", "lunar", -3, 4, False),  # running, not yet activated
    ("Halloween Spooktacular", "halloween", -20, -1, True),  # ended, still active
    ("Summer Splash", "summer", 10, 17, False),  # ahead
    ("Winter Wonderland", "winter", -60, -45, False),  # long over, already deactivated
)
BASE_GIFTS = (
    ("Rose", 1),
    ("Heart", 5),
    ("Star", 10),
    ("Rocket", 100),
    ("Crown", 500),
    ("Castle", 1_000),
)
FESTIVAL_GIFTS = {
    "lunar": (("Red Envelope", 88), ("Lantern", 20), ("Dragon", 888)),
    "halloween": (("Pumpkin", 13), ("Ghost", 31), ("Haunted House", 666)),
    "summer": (("Beach Ball", 15), ("Ice Cream", 5), ("Surfboard", 200)),
    "winter": (("Snowflake", 3), ("Snowman", 50), ("Sleigh", 500)),
}


def festivals(ctx: Context) -> list[Frame]:
    n = len(FESTIVALS)
    name, theme, start, end, active = zip(*FESTIVALS)
    gift_rows = [(g, price, None, True) for g, price in BASE_GIFTS]
    for festival_id, (_, fest_theme, _, _, fest_active) in enumerate(FESTIVALS, start=1):
        gift_rows += [
            (g, price, festival_id, fest_active) for g, price in FESTIVAL_GIFTS[fest_theme]
        ]
    gift_name, price, festival_id, gift_active = zip(*gift_rows)
    missing = np.array([f is None for f in festival_id])
    return [
        Frame(
            "festivals",
            {
                "id": ids(n),
                "name": list(name),
                "theme": list(theme),
                "start_at": ts(ctx.now + np.array(start, dtype=np.int64) * DAY),
                "end_at": ts(ctx.now + np.array(end, dtype=np.int64) * DAY),
                "is_active": np.array(active),
            },
        ),
        Frame(
            "gifts",
            {
                "id": ids(len(gift_rows)),
                "name": list(gift_name),
                "price_coins": np.array(price, dtype=np.int64),
                "festival_id": nullable(np.array([f or 0 for f in festival_id]), missing),
                "is_active": np.array(gift_active),
            },
        ),
    ]
