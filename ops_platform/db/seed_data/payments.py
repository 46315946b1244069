"""Payments at every stage of the status-check schedule."""

from __future__ import annotations

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.seed_data._base import Context, cases, choose, hex_tokens, ids, pick
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, NULL_TS, between, null_ts, ts

PAYMENT_CASES = {
    "succeeded": 0.62,
    "failed": 0.08,
    "canceled": 0.04,
    "expired": 0.06,
    "pending_check_due": 0.05,  # inside the 30-minute window, next check due now
    "pending_check_later": 0.04,  # inside the window, next check still ahead
    "pending_too_old": 0.05,  # older than 30 minutes: the next check expires it
    "succeeded_last_hour": 0.03,  # settled in the latest complete hour (hourly metrics)
    "failed_last_hour": 0.03,
}
# seconds after creation of each status check: 5, 10, 15, 20, 30, 60 s, then every 60 s
CHECK_OFFSETS = np.array(
    [5, 10, 15, 20, 30, 60] + [60 + 60 * k for k in range(1, 31)], dtype=np.int64
)


def payments(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("payments")
    codes = pick(rng, n, PAYMENT_CASES)
    now = ctx.now
    age = null_ts(n)
    status = np.empty(n, dtype=object)
    checks = np.zeros(n, dtype=np.int64)
    next_check, last_checked, settled = null_ts(n), null_ts(n), null_ts(n)
    last_hour_start = ctx.hour - HOUR
    for case, idx in cases(codes, PAYMENT_CASES):
        m = len(idx)
        if case.startswith("pending"):
            status[idx] = "pending"
            if case == "pending_too_old":
                a = between(rng, 31 * MINUTE, 3 * DAY, m)
            else:
                a = between(rng, 6, 29 * MINUTE, m)
            passed = np.searchsorted(CHECK_OFFSETS, np.minimum(a, 30 * MINUTE), side="right")
            # due: one scheduled check has passed unanswered; later: every passed check is done
            done = passed - 1 if case != "pending_check_later" else passed
            done = np.maximum(done, 0)
            age[idx], checks[idx] = a, done
            next_check[idx] = now - a + CHECK_OFFSETS[np.minimum(done, len(CHECK_OFFSETS) - 1)]
            last_checked[idx] = np.where(
                done > 0, now - a + CHECK_OFFSETS[np.maximum(done - 1, 0)], NULL_TS
            )
            if case == "pending_too_old":
                next_check[idx] = now - between(rng, MINUTE, HOUR, m)
            if case == "pending_check_later":
                next_check[idx] = np.maximum(next_check[idx], now + 1)
            continue
        terminal = case.removesuffix("_last_hour")
        status[idx] = terminal
        if case.endswith("_last_hour"):
            settle = between(rng, last_hour_start, last_hour_start + HOUR - 5 * MINUTE, m)
            a = now - settle + between(rng, 10, 4 * MINUTE, m)
        else:
            a = between(rng, 31 * MINUTE, 90 * DAY, m)
            settle = (
                now
                - a
                + (30 * MINUTE if terminal == "expired" else between(rng, 10, 10 * MINUTE, m))
            )
        age[idx], settled[idx], last_checked[idx] = a, settle, settle
        checks[idx] = np.searchsorted(CHECK_OFFSETS, settle - (now - a), side="right").clip(1, None)
    created = now - age
    order = np.argsort(created, kind="stable")
    created, status, checks = created[order], status[order], checks[order]
    next_check, last_checked, settled = next_check[order], last_checked[order], settled[order]
    amount = rng.choice([499, 999, 1_999, 4_999, 9_999, 19_999], n) + rng.integers(0, 2, n) * 100
    return [
        Frame(
            "payments",
            {
                "id": ids(n),
                "provider_ref": ["pay_" + token for token in hex_tokens(rng, n, 24)],
                "user_id": ctx.users_before(rng, created),
                "amount_cents": amount.astype(np.int64),
                "currency": choose(rng, ("USD", "EUR", "AUD"), n, p=[0.7, 0.15, 0.15]),
                "status": status,
                "created_at": ts(created),
                "check_count": checks,
                "next_check_at": ts(next_check),
                "last_checked_at": ts(last_checked),
                "settled_at": ts(settled),
            },
        )
    ]
