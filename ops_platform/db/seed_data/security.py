"""Stored files, webhook events, security alerts."""

from __future__ import annotations

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.seed_data._base import Context, hex_tokens, ids, sort_by
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, between, ts

FILE_EXTENSIONS = ("jpg", "png", "webp", "pdf", "mp4", "mov")


def stored_files(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("stored_files")
    created = np.sort(ctx.now - between(rng, MINUTE, 365 * DAY, n))
    owner = ctx.users_before(rng, created)
    months = np.datetime_as_string(ts(created).astype("datetime64[M]")).tolist()  # 'YYYY-MM'
    names = hex_tokens(rng, n, 16)
    ext = rng.integers(0, len(FILE_EXTENSIONS), n).tolist()
    keys = [
        f"uploads/{o}/{m[:4]}/{m[5:]}/{name}.{FILE_EXTENSIONS[e]}"
        for o, m, name, e in zip(owner.tolist(), months, names, ext)
    ]
    return [
        Frame(
            "stored_files",
            {"id": ids(n), "s3_key": keys, "owner_id": owner, "created_at": ts(created)},
        )
    ]


WEBHOOK_PROVIDERS = ("stripe", "paypal", "payplus")
INVALID_SIGNATURE_IP = "203.0.113.66"  # invalid signatures in the last minutes
BURST_IP = "198.51.100.23"  # a request burst in the last minutes
OLD_ATTACK_IP = "192.0.2.99"  # invalid signatures two days ago, outside any recent window


def webhook_events(ctx: Context) -> list[Frame]:
    """Normal provider traffic over a week, plus attack patterns in the last 10 minutes
    (invalid signatures from one IP, a burst from another, one event id delivered three
    times) and an old invalid-signature run outside the 15-minute window."""
    rng = ctx.rng("webhook_events")
    now = ctx.now
    normal = ctx.size("webhook_events")
    provider_ips = [
        f"10.{p}.{i // 250}.{i % 250 + 1}" for p in range(len(WEBHOOK_PROVIDERS)) for i in range(20)
    ]
    provider = rng.integers(0, len(WEBHOOK_PROVIDERS), normal)
    received = now - between(rng, 10, 7 * DAY, normal)
    received[: min(normal, 10)] = now - between(
        rng, 10, 14 * MINUTE, min(normal, 10)
    )  # some inside the window
    parts = {
        "provider": [np.array(WEBHOOK_PROVIDERS, dtype=object)[provider]],
        "source_ip": [
            np.array(provider_ips, dtype=object)[provider * 20 + rng.integers(0, 20, normal)]
        ],
        "event_id": [np.array(["evt_" + t for t in hex_tokens(rng, normal, 24)], dtype=object)],
        "signature_valid": [rng.random(normal) > 0.01],
        "received_at": [received],
    }

    def add(k, provider_name, ip, valid, low, high, event_ids=None):
        parts["provider"].append(np.full(k, provider_name, dtype=object))
        parts["source_ip"].append(np.full(k, ip, dtype=object))
        parts["event_id"].append(
            np.array(event_ids or ["evt_" + t for t in hex_tokens(rng, k, 24)], dtype=object)
        )
        parts["signature_valid"].append(np.full(k, valid))
        parts["received_at"].append(now - between(rng, low, high, k))

    add(30, "stripe", INVALID_SIGNATURE_IP, False, MINUTE, 8 * MINUTE)
    add(200, "paypal", BURST_IP, True, MINUTE, 5 * MINUTE)
    add(
        3,
        "stripe",
        provider_ips[0],
        True,
        2 * MINUTE,
        9 * MINUTE,
        ["evt_replayed_" + hex_tokens(rng, 1, 16)[0]] * 3,
    )
    add(30, "payplus", OLD_ATTACK_IP, False, 2 * DAY, 2 * DAY + HOUR)
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    columns = sort_by(columns["received_at"], columns)
    total = len(columns["received_at"])
    return [
        Frame(
            "webhook_events",
            {
                "id": ids(total),
                "provider": columns["provider"],
                "source_ip": columns["source_ip"],
                "event_id": columns["event_id"],
                "signature_valid": columns["signature_valid"].astype(bool),
                "received_at": ts(columns["received_at"]),
            },
        )
    ]


def security_alerts(ctx: Context) -> list[Frame]:
    return [Frame("security_alerts", {})]  # empty: the monitor writes it
