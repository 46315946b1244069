"""The synthetic data set: one generator per table (or group of related tables).

Every generator builds whole columns with numpy from its own random stream (derived from
the seed and the table name), so the same seed gives the same data and one table's
changes do not shift another's. Times are seconds relative to `now` (UTC), so a seeded
database always has rows on both sides of every expiry and retention boundary the jobs
look at. Each generator pins its boundary cases on its first rows (`pick`), so even a
tiny data set has every case; the rest is drawn with realistic proportions.

Row counts scale from the number of users (`SIZES`).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.schema import GAME_TYPES

MINUTE, HOUR, DAY = 60, 3_600, 86_400
NULL_TS = np.iinfo(np.int64).min  # becomes NaT: a NULL timestamp

# rows per user, and the minimum so that a tiny data set still covers every case
SIZES: dict[str, tuple[float, int]] = {
    "sessions": (2.0, 40),
    "refresh_tokens": (0.5, 20),
    "email_verification_tokens": (0.1, 12),
    "password_reset_tokens": (0.05, 12),
    "coin_transactions": (0.5, 30),
    "payments": (0.2, 30),
    "projects": (0.02, 6),
    "notification_batches": (0.2, 30),
    "loose_notifications": (0.3, 20),
    "realtime_events": (0.01, 20),
    "streams": (0.05, 10),
    "stream_events": (5.0, 300),
    "reputation_events": (1.0, 60),
    "game_sessions": (0.3, 80),
    "players": (0.1, 12),
    "courses": (0.0005, 5),
    "enrollments": (0.3, 40),
    "learning_events": (1.5, 200),
    "stored_files": (0.2, 20),
    "webhook_events": (0.02, 100),
}


def size(name: str, users: int) -> int:
    per_user, minimum = SIZES[name]
    return max(minimum, int(round(users * per_user)))


# --- helpers -------------------------------------------------------------------------
def pick(rng: np.random.Generator, n: int, weights: dict[str, float]) -> np.ndarray:
    """A case index per row, drawn with `weights`; the first rows take every case once, so
    each case exists whenever n >= number of cases."""
    p = np.array(list(weights.values()), dtype=float)
    codes = rng.choice(len(p), size=n, p=p / p.sum())
    forced = min(n, len(p))
    codes[:forced] = np.arange(forced)
    return codes


def cases(codes: np.ndarray, weights: dict[str, float]):
    """(case name, row indices) for each case."""
    for code, name in enumerate(weights):
        yield name, np.flatnonzero(codes == code)


def between(rng: np.random.Generator, low, high, n: int | None = None) -> np.ndarray:
    """Whole seconds uniformly in [low, high); low/high may be arrays."""
    low = np.asarray(low, dtype=np.int64)
    high = np.asarray(high, dtype=np.int64)
    if n is None:
        n = int(np.broadcast(low, high).size)
    return (low + rng.random(n) * np.maximum(high - low, 0)).astype(np.int64)


def ts(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (NULL_TS for NULL) → datetime64[s] (NaT for NULL)."""
    return np.asarray(seconds, dtype=np.int64).view("datetime64[s]")


def null_ts(n: int) -> np.ndarray:
    return np.full(n, NULL_TS, dtype=np.int64)


def nullable(values: np.ndarray, missing: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.MaskedArray(np.asarray(values, dtype=np.int64), mask=missing)


def hex_tokens(rng: np.random.Generator, n: int, chars: int) -> list[str]:
    raw = rng.bytes(n * chars // 2).hex()
    return [raw[i:i + chars] for i in range(0, n * chars, chars)]


def sort_by(key: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(key, kind="stable")
    return {name: values[order] for name, values in columns.items()}


def ids(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.int64)


def choose(rng: np.random.Generator, options, n: int, p=None) -> np.ndarray:
    """Strings drawn from `options` as an object array (one shared object per option)."""
    table = np.array(list(options), dtype=object)
    weights = None if p is None else np.asarray(p, dtype=float) / np.sum(p)
    return table[rng.choice(len(table), size=n, p=weights)]


@dataclass
class Context:
    """What the generators share: the clock, the seed, and facts about earlier tables."""

    users: int
    seed: int
    now_dt: datetime
    user_created: np.ndarray = field(default=None, repr=False)  # epoch seconds, ascending by id
    emails: list[str] = field(default=None, repr=False)
    unverified_ids: np.ndarray = field(default=None, repr=False)
    og_ids: np.ndarray = field(default=None, repr=False)
    streams: dict = field(default=None, repr=False)

    def __post_init__(self):
        self.now = int(self.now_dt.timestamp())
        self.today = self.now - self.now % DAY           # UTC midnight
        self.hour = self.now - self.now % HOUR           # start of the current hour

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    def size(self, name: str) -> int:
        return size(name, self.users)

    def users_before(self, rng: np.random.Generator, moments: np.ndarray) -> np.ndarray:
        """A random user id per moment, among the users who had signed up by then."""
        signed_up = np.searchsorted(self.user_created, moments, side="right")
        signed_up = np.maximum(signed_up, 1)
        return (1 + (rng.random(len(moments)) * signed_up).astype(np.int64)).clip(1, self.users)

    def random_users(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(1, self.users + 1, n, dtype=np.int64)


# --- users and auth --------------------------------------------------------------------
FIRST_NAMES = (
    "olivia liam emma noah ava oliver sophia elijah isabella james mia william amelia "
    "benjamin harper lucas evelyn henry abigail theo emily jack ella levi chloe mateo "
    "aria sebastian zoe leo nora kai maya ezra lily hugo ruby omar sara yuki arjun"
).split()
LAST_NAMES = (
    "smith johnson williams brown jones garcia miller davis martin lopez wilson anderson "
    "taylor thomas moore jackson white harris clark lewis walker young allen king wright "
    "scott nguyen hill green adams baker nelson carter mitchell perez roberts turner kim"
).split()
# Reserved example domains only: the email jobs really send mail.
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "inbox.example.org")


def users(ctx: Context) -> list[Frame]:
    rng = ctx.rng("users")
    n = ctx.users
    recent = rng.random(n) < 0.35
    age = np.where(recent, rng.exponential(21 * DAY, n), rng.uniform(0, 730 * DAY, n))
    age = age.clip(10 * MINUTE, 730 * DAY).astype(np.int64)
    verified = rng.random(n) < 0.85
    og_level = np.where(rng.random(n) < 0.06, rng.choice([1, 2, 3], n, p=[0.6, 0.3, 0.1]), 0)
    og_active = rng.random(n) < 0.7
    # Boundary cases on the first rows: (age, verified, og_level, og still active).
    last_complete_hour_middle = ctx.now - (ctx.hour - HOUR + 30 * MINUTE)
    pinned = [
        (45 * DAY, False, 0, False),  # never verified, past the 30-day limit
        (3 * DAY, False, 0, False),  # never verified, still inside it
        (last_complete_hour_middle, True, 0, False),  # a signup in the latest complete hour
        (200 * DAY, True, 2, True),  # OG, active
        (400 * DAY, True, 1, False),  # OG, lapsed
    ][:n]
    for i, (a, v, level, active) in enumerate(pinned):
        age[i], verified[i], og_level[i], og_active[i] = a, v, level, active

    created = ctx.now - age
    verified_at = np.where(verified, np.minimum(created + rng.exponential(2 * HOUR, n).astype(np.int64), ctx.now), NULL_TS)
    is_og = og_level > 0
    og_expires = np.where(
        og_active, ctx.now + between(rng, HOUR, 30 * DAY, n), ctx.now - between(rng, HOUR, 60 * DAY, n)
    )
    columns = sort_by(created, {
        "created_at": created,
        "email_verified_at": verified_at,
        "trust_score": rng.normal(55, 15, n).clip(0, 100).round(1),
        "trust_score_updated_at": np.where(rng.random(n) < 0.7, ctx.now - between(rng, 0, 2 * HOUR, n), NULL_TS),
        "coin_balance": (rng.lognormal(5, 1.5, n) * (rng.random(n) < 0.7)).astype(np.int64),
        "bonus_balance": np.where(is_og, rng.integers(0, 5_000, n), 0).astype(np.int64),
        "og_level": og_level.astype(np.int64),
        "og_expires_at": np.where(is_og, og_expires, NULL_TS),
    })
    user_ids = ids(n)
    first = rng.integers(0, len(FIRST_NAMES), n).tolist()
    last = rng.integers(0, len(LAST_NAMES), n).tolist()
    domain = rng.integers(0, len(EMAIL_DOMAINS), n).tolist()
    emails = [
        f"{FIRST_NAMES[f]}.{LAST_NAMES[l]}{i}@{EMAIL_DOMAINS[d]}"
        for f, l, i, d in zip(first, last, user_ids.tolist(), domain)
    ]
    ctx.user_created = columns["created_at"]
    ctx.emails = emails
    ctx.unverified_ids = user_ids[columns["email_verified_at"] == NULL_TS]
    og_sorted = columns["og_level"] > 0
    ctx.og_ids = user_ids[og_sorted & (columns["og_expires_at"] > ctx.now)]
    frame = Frame("users", {
        "id": user_ids,
        "email": emails,
        "created_at": ts(columns["created_at"]),
        "email_verified_at": ts(columns["email_verified_at"]),
        "trust_score": columns["trust_score"],
        "trust_score_updated_at": ts(columns["trust_score_updated_at"]),
        "coin_balance": columns["coin_balance"],
        "bonus_balance": columns["bonus_balance"],
        "og_level": columns["og_level"],
        "og_tier_id": nullable(columns["og_level"], ~og_sorted),
        "og_expires_at": ts(columns["og_expires_at"]),
    })
    return [frame]


# (level, price in coins, duration in days): the daily bonus is floor(price * 0.6 / days)
OG_TIERS = ((1, 3_000, 30), (2, 9_000, 30), (3, 36_500, 365))


def og_tiers(ctx: Context) -> list[Frame]:
    levels, prices, days = (np.array(col, dtype=np.int64) for col in zip(*OG_TIERS))
    return [Frame("og_tiers", {"id": levels, "level": levels, "price_coins": prices, "duration_days": days})]


SESSION_CASES = {
    "live": 0.42,
    "expired_recently": 0.15,
    "expired_long_ago": 0.08,
    "revoked_recently": 0.04,  # inside the 7-day revoked retention
    "revoked_long_ago": 0.04,
    "idle": 0.06,  # not seen for over 30 days, expiry still ahead
    "no_expiry": 0.01,  # a bad row: a user session without expires_at
    "player_active": 0.10,
    "player_stale": 0.06,  # anonymous, last seen over 30 days ago, no expiry
    "player_unseen": 0.04,  # anonymous, never seen since creation
}


def sessions(ctx: Context) -> list[Frame]:
    rng = ctx.rng("sessions")
    n = ctx.size("sessions")
    codes = pick(rng, n, SESSION_CASES)
    now = ctx.now
    created, last_seen, expires, revoked = (null_ts(n) for _ in range(4))
    for case, idx in cases(codes, SESSION_CASES):
        m = len(idx)
        if case == "live":
            c = now - between(rng, 10 * MINUTE, 20 * DAY, m)
            created[idx], last_seen[idx], expires[idx] = c, between(rng, c, now), now + between(rng, HOUR, 30 * DAY, m)
        elif case in ("expired_recently", "expired_long_ago"):
            e = now - (between(rng, MINUTE, DAY, m) if case == "expired_recently" else between(rng, DAY, 60 * DAY, m))
            c = e - between(rng, DAY, 30 * DAY, m)
            created[idx], last_seen[idx], expires[idx] = c, between(rng, c, e), e
        elif case == "revoked_recently":
            c_age = between(rng, DAY, 25 * DAY, m)
            r_age = between(rng, MINUTE, np.minimum(c_age, 7 * DAY - HOUR))
            created[idx], revoked[idx], last_seen[idx] = now - c_age, now - r_age, now - r_age - MINUTE
            expires[idx] = now - c_age + 30 * DAY
        elif case == "revoked_long_ago":
            c_age = between(rng, 8 * DAY, 29 * DAY, m)
            r_age = between(rng, 7 * DAY + HOUR, c_age)
            created[idx], revoked[idx], last_seen[idx] = now - c_age, now - r_age, now - r_age - MINUTE
            expires[idx] = now - c_age + 30 * DAY
        elif case == "idle":
            c_age = between(rng, 31 * DAY, 85 * DAY, m)
            created[idx], last_seen[idx] = now - c_age, now - between(rng, 31 * DAY, c_age)
            expires[idx] = now - c_age + 90 * DAY  # a long "remember me" session
        elif case in ("no_expiry", "player_active"):
            c_age = between(rng, HOUR, 60 * DAY, m)
            created[idx], last_seen[idx] = now - c_age, now - between(rng, 0, np.minimum(c_age, 29 * DAY))
        elif case == "player_stale":
            c_age = between(rng, 31 * DAY, 120 * DAY, m)
            created[idx], last_seen[idx] = now - c_age, now - between(rng, 31 * DAY, c_age)
        elif case == "player_unseen":
            created[idx] = now - between(rng, HOUR, 90 * DAY, m)
    player = np.isin(codes, [i for i, c in enumerate(SESSION_CASES) if c.startswith("player")])
    anonymous = player & (rng.random(n) < 0.7)
    user_id = ctx.users_before(rng, created)
    columns = sort_by(created, {
        "user_id": user_id, "anonymous": anonymous, "player": player,
        "created_at": created, "last_seen_at": last_seen, "expires_at": expires, "revoked_at": revoked,
    })
    return [Frame("sessions", {
        "id": ids(n),
        "user_id": nullable(columns["user_id"], columns["anonymous"]),
        "kind": np.where(columns["player"], "player", "user").astype(object),
        "created_at": ts(columns["created_at"]),
        "last_seen_at": ts(columns["last_seen_at"]),
        "expires_at": ts(columns["expires_at"]),
        "revoked_at": ts(columns["revoked_at"]),
    })]


def _tokens(ctx: Context, table: str, lifetime: int, expired_ranges: dict[str, tuple[int, int]],
            user_pool: np.ndarray | None = None) -> Frame:
    """Tokens living `lifetime` seconds: live ones, and expired ones `expired_ranges` ago."""
    rng = ctx.rng(table)
    n = ctx.size(table)
    weights = {"live": 0.5, **{name: 0.5 / len(expired_ranges) for name in expired_ranges}}
    codes = pick(rng, n, weights)
    expires = null_ts(n)
    for case, idx in cases(codes, weights):
        if case == "live":
            expires[idx] = ctx.now + between(rng, MINUTE, lifetime, len(idx))
        else:
            low, high = expired_ranges[case]
            expires[idx] = ctx.now - between(rng, low, high, len(idx))
    expires.sort()
    created = expires - lifetime
    if user_pool is not None and len(user_pool):
        from_pool = rng.random(n) < 0.7
        user_id = np.where(from_pool, user_pool[rng.integers(0, len(user_pool), n)], ctx.users_before(rng, created))
    else:
        user_id = ctx.users_before(rng, created)
    return Frame(table, {
        "id": ids(n),
        "user_id": user_id,
        "token_hash": hex_tokens(rng, n, 64),
        "created_at": ts(created),
        "expires_at": ts(expires),
    })


def tokens(ctx: Context) -> list[Frame]:
    return [
        # refresh tokens are kept 7 days past expiry
        _tokens(ctx, "refresh_tokens", 30 * DAY, {
            "expired_inside_retention": (MINUTE, 7 * DAY - HOUR),
            "expired_past_retention": (7 * DAY + HOUR, 60 * DAY),
        }),
        # verification links live a day; mostly for the accounts still unverified
        _tokens(ctx, "email_verification_tokens", DAY, {
            "expired_today": (MINUTE, 23 * HOUR),
            "expired_long_ago": (8 * DAY, 60 * DAY),
        }, user_pool=ctx.unverified_ids),
        # reset links live an hour and are kept 24 h past expiry
        _tokens(ctx, "password_reset_tokens", HOUR, {
            "expired_inside_retention": (MINUTE, 23 * HOUR),
            "expired_past_retention": (25 * HOUR, 30 * DAY),
        }),
    ]


# name → versions as (status, created days ago, expires in days (negative: past), retire_after in days)
SECRET_PLANS = {
    "jwt_signing_key": [("active", 20, 70, None)],
    "session_cookie_secret": [("active", 95, -5, None)],  # past expiry: due for rotation
    "webhook_signing_secret": [("retired", 200, -110, -100), ("retiring", 110, -10, -2), ("active", 10, 80, None)],
    "payments_api_key": [("retiring", 92, -2, 5), ("active", 2, 88, None)],  # inside its grace period
    "smtp_password": [("active", 400, -35, None)],
    "s3_access_key": [("active", 30, 60, None)],
    "encryption_master_key": [("retired", 500, -130, -120), ("active", 130, 235, None)],
    "redis_password": [("active", 85, 5, None)],
}


def secrets(ctx: Context) -> list[Frame]:
    rng = ctx.rng("secrets")
    rows = [
        (name, version, status, created, expires, retire_after)
        for name, plan in SECRET_PLANS.items()
        for version, (status, created, expires, retire_after) in enumerate(plan, start=1)
    ]
    n = len(rows)
    name, version, status, created, expires, retire_after = zip(*rows)
    created = ctx.now - np.array(created, dtype=np.int64) * DAY
    expires = ctx.now + np.array(expires, dtype=np.int64) * DAY
    retire = np.array([NULL_TS if r is None else ctx.now + r * DAY for r in retire_after], dtype=np.int64)
    # a version stops being the active one when its successor is created
    rotated = np.array([
        NULL_TS if s == "active" else int(created[i + 1]) for i, s in enumerate(status)
    ], dtype=np.int64)
    return [Frame("secrets", {
        "id": ids(n),
        "name": list(name),
        "version": np.array(version, dtype=np.int64),
        "value_ciphertext": ["enc:v1:" + token for token in hex_tokens(rng, n, 96)],
        "status": list(status),
        "created_at": ts(created),
        "expires_at": ts(expires),
        "rotated_at": ts(rotated),
        "retire_after": ts(retire),
    })]


COIN_KINDS = {  # kind: (weight, balance, sign, typical amount)
    "purchase": (0.25, "coin", 1, 500),
    "gift_sent": (0.25, "coin", -1, 40),
    "gift_received": (0.25, "coin", 1, 40),
    "og_purchase": (0.03, "coin", -1, 9_000),
    "og_daily_bonus": (0.12, "bonus", 1, 100),
    "prize": (0.05, "coin", 1, 250),
    "refund": (0.05, "coin", 1, 300),
}


def coin_transactions(ctx: Context) -> list[Frame]:
    rng = ctx.rng("coin_transactions")
    n = ctx.size("coin_transactions")
    weights = {kind: spec[0] for kind, spec in COIN_KINDS.items()}
    codes = pick(rng, n, weights)
    created = np.sort(ctx.now - between(rng, MINUTE, 90 * DAY, n))
    codes = codes[rng.permutation(n)]
    user_id = ctx.users_before(rng, created)
    kinds = np.array(list(COIN_KINDS), dtype=object)[codes]
    balance = np.array([spec[1] for spec in COIN_KINDS.values()], dtype=object)[codes]
    sign = np.array([spec[2] for spec in COIN_KINDS.values()])[codes]
    typical = np.array([spec[3] for spec in COIN_KINDS.values()])[codes]
    amount = (sign * np.maximum(1, rng.lognormal(0, 0.6, n) * typical)).astype(np.int64)
    bonus = codes == list(COIN_KINDS).index("og_daily_bonus")
    if len(ctx.og_ids):
        user_id[bonus] = ctx.og_ids[rng.integers(0, len(ctx.og_ids), int(bonus.sum()))]
    row_ids = ids(n)
    return [Frame("coin_transactions", {
        "id": row_ids,
        "user_id": user_id,
        "kind": kinds,
        "amount": amount,
        "balance": balance,
        # a prefix of its own, so the seed never collides with the jobs' keys; ascending
        # with the id, so the unique index grows at its right edge during the load
        "idempotency_key": [f"seed:{i:010d}:{kind}" for kind, i in zip(kinds.tolist(), row_ids.tolist())],
        "created_at": ts(created),
    })]


# --- payments ----------------------------------------------------------------------------
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
CHECK_OFFSETS = np.array([5, 10, 15, 20, 30, 60] + [60 + 60 * k for k in range(1, 31)], dtype=np.int64)


def payments(ctx: Context) -> list[Frame]:
    rng = ctx.rng("payments")
    n = ctx.size("payments")
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
            last_checked[idx] = np.where(done > 0, now - a + CHECK_OFFSETS[np.maximum(done - 1, 0)], NULL_TS)
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
            settle = now - a + (30 * MINUTE if terminal == "expired" else between(rng, 10, 10 * MINUTE, m))
        age[idx], settled[idx], last_checked[idx] = a, settle, settle
        checks[idx] = np.searchsorted(CHECK_OFFSETS, settle - (now - a), side="right").clip(1, None)
    created = now - age
    order = np.argsort(created, kind="stable")
    created, status, checks = created[order], status[order], checks[order]
    next_check, last_checked, settled = next_check[order], last_checked[order], settled[order]
    amount = rng.choice([499, 999, 1_999, 4_999, 9_999, 19_999], n) + rng.integers(0, 2, n) * 100
    return [Frame("payments", {
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
    })]


# --- projects (agency portal) ---------------------------------------------------------
PROJECT_ADJECTIVES = "Bold Bright Quiet Swift Golden Urban Coastal Modern Wild Clear Prime Lunar".split()
PROJECT_NOUNS = "Harbor Summit Canvas Orbit Meadow Forge Atlas Beacon Vertex Grove Pulse Tide".split()
PROJECT_WORKS = ("brand film", "product launch video", "explainer series", "event recap", "social campaign")
TEAM_CASES = {"member": 0.75, "removed_long_ago": 0.12, "removed_recently": 0.13}  # 90-day boundary
PAYMENT_STATUS_CASES = {
    "balance_overdue": 0.30,  # advance paid over 3 days ago, balance unpaid: remind
    "advance_recent": 0.15,  # advance paid under 3 days ago: not yet
    "fully_paid": 0.30,
    "nothing_paid": 0.25,
}


def projects(ctx: Context) -> list[Frame]:
    rng = ctx.rng("projects")
    n = ctx.size("projects")
    now = ctx.now
    project_ids = ids(n)
    names = [
        f"{PROJECT_ADJECTIVES[a]} {PROJECT_NOUNS[b]} {PROJECT_WORKS[c]}"
        for a, b, c in zip(*(rng.integers(0, len(options), n).tolist()
                             for options in (PROJECT_ADJECTIVES, PROJECT_NOUNS, PROJECT_WORKS)))
    ]

    # team: a primary contact first, then 1-5 other members, some soft-removed
    team_size = rng.integers(2, 7, n)
    member_project = np.repeat(project_ids, team_size)
    m = len(member_project)
    primary = np.r_[True, member_project[1:] != member_project[:-1]]
    member_user = ctx.random_users(rng, m)
    removed = null_ts(m)
    others = np.flatnonzero(~primary)
    team_codes = pick(rng, len(others), TEAM_CASES)
    for case, idx in cases(team_codes, TEAM_CASES):
        rows = others[idx]
        if case == "removed_long_ago":
            removed[rows] = now - between(rng, 90 * DAY + HOUR, 400 * DAY, len(rows))
        elif case == "removed_recently":
            removed[rows] = now - between(rng, DAY, 90 * DAY - HOUR, len(rows))
    primary_user = member_user[primary]

    # payment status per project
    status_codes = pick(rng, n, PAYMENT_STATUS_CASES)
    advance_paid = np.zeros(n, dtype=bool)
    balance_paid = np.zeros(n, dtype=bool)
    advance_at = null_ts(n)
    for case, idx in cases(status_codes, PAYMENT_STATUS_CASES):
        k = len(idx)
        if case == "balance_overdue":
            advance_paid[idx], advance_at[idx] = True, now - between(rng, 3 * DAY + HOUR, 60 * DAY, k)
        elif case == "advance_recent":
            advance_paid[idx], advance_at[idx] = True, now - between(rng, HOUR, 3 * DAY - HOUR, k)
        elif case == "fully_paid":
            advance_paid[idx], balance_paid[idx] = True, True
            advance_at[idx] = now - between(rng, 10 * DAY, 300 * DAY, k)

    frames = [
        Frame("projects", {"id": project_ids, "name": names}),
        Frame("project_team", {
            "id": ids(m),
            "project_id": member_project,
            "user_id": member_user,
            "is_primary_contact": primary,
            "removed_at": ts(removed),
        }),
        Frame("project_payment_status", {
            "project_id": project_ids,
            "advance_paid": advance_paid,
            "advance_paid_at": ts(advance_at),
            "balance_paid": balance_paid,
        }),
        _payment_reminders(ctx, rng, project_ids[status_codes == 0], primary_user[status_codes == 0]),
        _deliverables(ctx, rng, project_ids),
    ]
    return frames


def _payment_reminders(ctx: Context, rng, overdue_projects: np.ndarray, contacts: np.ndarray) -> Frame:
    """Reminders already sent on earlier days; the first overdue project also got today's."""
    per_project = rng.integers(0, 4, len(overdue_projects))
    project = np.repeat(overdue_projects, per_project)
    contact = np.repeat(contacts, per_project)
    # distinct earlier days per project: 1, 2, 3 … days before today
    rank = np.arange(len(project)) - np.repeat(np.cumsum(per_project) - per_project, per_project)
    day = ctx.today - (rank + 1) * DAY
    status = np.full(len(project), "SENT", dtype=object)
    if len(overdue_projects) > 1:  # today's reminder already sent: must not be sent twice
        project = np.r_[overdue_projects[0], project]
        contact = np.r_[contacts[0], contact]
        day = np.r_[ctx.today, day]
        status = np.r_[np.array(["SENT"], dtype=object), status]
    n = len(project)
    scheduled = day + 10 * HOUR
    scheduled = np.minimum(scheduled, ctx.now - MINUTE)
    return Frame("payment_reminders", {
        "id": ids(n),
        "project_id": project,
        "kind": np.full(n, "BALANCE_DUE", dtype=object),
        "status": status,
        "recipient_email": [ctx.emails[u - 1] for u in contact.tolist()],
        "scheduled_for": ts(scheduled),
        "sent_at": ts(scheduled + between(rng, 1, 30, n)),
        "reminder_date": (day // DAY).astype("datetime64[D]"),
    })


DELIVERABLE_CASES = {"delivered_live": 0.55, "delivered_past_expiry": 0.25, "already_expired": 0.12, "in_progress": 0.08}


def _deliverables(ctx: Context, rng, project_ids: np.ndarray) -> Frame:
    project = np.repeat(project_ids, rng.integers(1, 6, len(project_ids)))
    n = len(project)
    delivered = null_ts(n)
    status = np.empty(n, dtype=object)
    for case, idx in cases(pick(rng, n, DELIVERABLE_CASES), DELIVERABLE_CASES):
        k = len(idx)
        if case == "delivered_live":
            delivered[idx], status[idx] = ctx.now - between(rng, DAY, 364 * DAY, k), "delivered"
        elif case == "delivered_past_expiry":
            delivered[idx], status[idx] = ctx.now - between(rng, 365 * DAY + HOUR, 700 * DAY, k), "delivered"
        elif case == "already_expired":
            delivered[idx], status[idx] = ctx.now - between(rng, 366 * DAY, 700 * DAY, k), "expired"
        else:
            status[idx] = "in_progress"
    expires = np.where(delivered == NULL_TS, NULL_TS, delivered + 365 * DAY)
    return Frame("deliverables", {
        "id": ids(n),
        "project_id": project,
        "delivered_at": ts(delivered),
        "expires_at": ts(expires),
        "status": status,
    })


# --- notifications and the email queue ------------------------------------------------
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
        s = now - (between(rng, MINUTE, 2 * HOUR, k) if case == "pending_due" else between(rng, 2 * HOUR, 14 * DAY, k))
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
            next_attempt[idx] = (now - between(rng, MINUTE, 30 * MINUTE, k) if case == "failed_retry_due"
                                 else now + between(rng, MINUTE, HOUR, k))
        elif case == "dead":
            status[idx], attempts[idx] = "dead", 5
            error[idx] = "550 5.1.1 mailbox unavailable"
            claimed[idx] = s + between(rng, HOUR, 2 * HOUR, k)
        else:
            status[idx], attempts[idx] = "processing", 1
            claimed[idx] = now - (between(rng, 20 * MINUTE, 2 * HOUR, k) if case == "processing_lease_expired"
                                  else between(rng, 5, 60, k))
            scheduled[idx] = np.minimum(scheduled[idx], claimed[idx] - MINUTE)
    order = np.argsort(scheduled, kind="stable")
    scheduled, status, attempts, claimed, sent, next_attempt, error = (
        a[order] for a in (scheduled, status, attempts, claimed, sent, next_attempt, error)
    )
    batch_user = ctx.random_users(rng, batches)

    # notifications: 1-5 per batch (same user, shortly before it is due), and in-app-only ones
    per_batch = rng.integers(1, 6, batches)
    owner_batch = np.repeat(np.arange(batches), per_batch)
    batch_created = np.minimum(scheduled[owner_batch], now - MINUTE) - between(rng, MINUTE, HOUR, len(owner_batch))
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
    return [
        Frame("notifications", {
            "id": notification_ids, "user_id": user, "title": titles, "body": bodies, "created_at": ts(created),
        }),
        Frame("notification_email_queue", {
            "id": ids(batches),
            "user_id": batch_user,
            "notification_ids": id_lists,
            "scheduled_for": ts(scheduled),
            "status": status,
            "attempts": attempts,
            "claimed_at": ts(claimed),
            "sent_at": ts(sent),
            "error_message": error,
            "next_attempt_at": ts(next_attempt),
            "message_id": [None if s == NULL_TS else f"<seed-{i}@ops-platform.example.com>"
                           for i, s in zip(range(1, batches + 1), sent.tolist())],
        }),
    ]


# --- streaming and engagement -----------------------------------------------------------
STREAM_CASES = {"live": 0.15, "ended_recently": 0.25, "ended_days_ago": 0.60}
STREAM_TOPICS = ("Speedrun", "Late night chill", "Cooking live", "Q&A", "Ranked grind", "Art stream",
                 "Music jam", "Coding session", "Just chatting", "Tournament")
STREAM_EVENT_KINDS = {"view": 0.62, "chat": 0.25, "gift": 0.04, "follow": 0.06, "share": 0.03}
GIFT_VALUES = (1, 5, 10, 50, 100, 500)


def streams(ctx: Context) -> list[Frame]:
    rng = ctx.rng("streams")
    n = ctx.size("streams")
    now = ctx.now
    started, ended = null_ts(n), null_ts(n)
    codes = pick(rng, n, STREAM_CASES)
    for case, idx in cases(codes, STREAM_CASES):
        k = len(idx)
        if case == "live":
            started[idx] = now - between(rng, 5 * MINUTE, 6 * HOUR, k)
        else:
            e = now - (between(rng, 5 * MINUTE, DAY, k) if case == "ended_recently" else between(rng, DAY, 7 * DAY, k))
            started[idx], ended[idx] = e - between(rng, 20 * MINUTE, 4 * HOUR, k), e
    order = np.argsort(started, kind="stable")
    started, ended, live = started[order], ended[order], (codes == 0)[order]
    creators = ctx.random_users(rng, max(1, n // 3))
    owner = creators[rng.integers(0, len(creators), n)]
    ctx.streams = {"started": started, "ended": np.where(live, now, ended), "live": live, "owner": owner}
    titles = [f"{STREAM_TOPICS[t]} #{i}" for t, i in zip(rng.integers(0, len(STREAM_TOPICS), n).tolist(), range(1, n + 1))]
    return [Frame("streams", {
        "id": ids(n), "owner_id": owner, "title": titles, "is_live": live,
        "started_at": ts(started), "ended_at": ts(ended),
    })]


def stream_events(ctx: Context) -> list[Frame]:
    rng = ctx.rng("stream_events")
    n = ctx.size("stream_events")
    s = ctx.streams
    streams_n = len(s["started"])
    popularity = rng.lognormal(0, 1.0, streams_n) * (s["ended"] - s["started"])
    stream = rng.choice(streams_n, n, p=popularity / popularity.sum())
    created = between(rng, s["started"][stream], s["ended"][stream])
    order = np.argsort(created, kind="stable")
    stream, created = stream[order], created[order]
    kind_code = pick(rng, n, STREAM_EVENT_KINDS)[rng.permutation(n)]
    gift = kind_code == list(STREAM_EVENT_KINDS).index("gift")
    value = np.where(gift, rng.choice(GIFT_VALUES, n, p=[0.35, 0.25, 0.2, 0.12, 0.06, 0.02]), 1).astype(float)
    anonymous_view = (kind_code == 0) & (rng.random(n) < 0.1)
    return [Frame("stream_events", {
        "id": ids(n),
        "stream_id": stream.astype(np.int64) + 1,
        "user_id": nullable(ctx.random_users(rng, n), anonymous_view),
        "kind": np.array(list(STREAM_EVENT_KINDS), dtype=object)[kind_code],
        "value": value,
        "created_at": ts(created),
    })]


def stream_rankings(ctx: Context) -> list[Frame]:
    """Stale rankings from a day ago for a few streams that have long ended."""
    rng = ctx.rng("stream_rankings")
    ended_long_ago = np.flatnonzero(ctx.streams["ended"] < ctx.now - DAY)
    chosen = np.sort(rng.permutation(ended_long_ago)[: max(1, len(ended_long_ago) // 10)]) if len(ended_long_ago) else []
    k = len(chosen)
    score = np.sort(rng.uniform(1, 500, k))[::-1].round(2)
    return [Frame("stream_rankings", {
        "stream_id": np.asarray(chosen, dtype=np.int64) + 1,
        "score": score,
        "rank": np.arange(1, k + 1, dtype=np.int64),
        "computed_at": ts(np.full(k, ctx.now - DAY - 2 * HOUR, dtype=np.int64)),
    })]


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
    rng = ctx.rng("reputation_events")
    n = ctx.size("reputation_events")
    created = np.sort(ctx.now - rng.exponential(60 * DAY, n).clip(MINUTE, 365 * DAY).astype(np.int64))
    codes = pick(rng, n, {kind: spec[0] for kind, spec in REPUTATION_KINDS.items()})[rng.permutation(n)]
    weights = np.array([spec[1] for spec in REPUTATION_KINDS.values()])[codes]
    return [Frame("reputation_events", {
        "id": ids(n),
        "user_id": ctx.users_before(rng, created),
        "kind": np.array(list(REPUTATION_KINDS), dtype=object)[codes],
        "weight": weights,
        "created_at": ts(created),
    })]


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
    return [Frame("thrones", {
        "id": ids(n),
        "stream_id": stream.astype(np.int64),
        "holder_id": ctx.random_users(rng, n),
        "total_coins": (rng.lognormal(6, 1, n)).astype(np.int64),
        "started_at": ts(started),
        "expires_at": ts(expires),
        "is_active": is_active,
    })]


# (name, theme, start in days from now, end in days from now, is_active as the app left it)
FESTIVALS = (
    ("Lunar New Year Festival", "lunar", -3, 4, False),  # running, not yet activated
    ("Halloween Spooktacular", "halloween", -20, -1, True),  # ended, still active
    ("Summer Splash", "summer", 10, 17, False),  # ahead
    ("Winter Wonderland", "winter", -60, -45, False),  # long over, already deactivated
)
BASE_GIFTS = (("Rose", 1), ("Heart", 5), ("Star", 10), ("Rocket", 100), ("Crown", 500), ("Castle", 1_000))
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
        gift_rows += [(g, price, festival_id, fest_active) for g, price in FESTIVAL_GIFTS[fest_theme]]
    gift_name, price, festival_id, gift_active = zip(*gift_rows)
    missing = np.array([f is None for f in festival_id])
    return [
        Frame("festivals", {
            "id": ids(n), "name": list(name), "theme": list(theme),
            "start_at": ts(ctx.now + np.array(start, dtype=np.int64) * DAY),
            "end_at": ts(ctx.now + np.array(end, dtype=np.int64) * DAY),
            "is_active": np.array(active),
        }),
        Frame("gifts", {
            "id": ids(len(gift_rows)), "name": list(gift_name), "price_coins": np.array(price, dtype=np.int64),
            "festival_id": nullable(np.array([f or 0 for f in festival_id]), missing),
            "is_active": np.array(gift_active),
        }),
    ]


# --- arcade ------------------------------------------------------------------------------
GAME_CASES = {"completed": 0.85, "active_fresh": 0.03, "active_abandoned": 0.05, "expired": 0.07}
GAME_WEIGHTS = (0.3, 0.25, 0.15, 0.15, 0.15)
GAME_SCORE_SCALE = {"snake": 120, "tetris": 40_000, "pong": 11, "breakout": 900, "space_invaders": 6_000}


def games(ctx: Context) -> list[Frame]:
    rng = ctx.rng("games")
    n = ctx.size("game_sessions")
    now = ctx.now
    players = ["0x" + token for token in hex_tokens(rng, ctx.size("players"), 40)]
    game = rng.choice(len(GAME_TYPES), n, p=GAME_WEIGHTS)
    codes = pick(rng, n, GAME_CASES)
    started = null_ts(n)
    ended = null_ts(n)
    status = np.empty(n, dtype=object)
    for case, idx in cases(codes, GAME_CASES):
        k = len(idx)
        if case == "completed":
            band = rng.choice(3, k, p=[0.45, 0.25, 0.30])
            age = np.where(band == 0, between(rng, 30 * MINUTE, 8 * DAY, k),
                           np.where(band == 1, between(rng, 8 * DAY, 90 * DAY, k), between(rng, 91 * DAY, 180 * DAY, k)))
            started[idx], status[idx] = now - age, "completed"
            ended[idx] = started[idx] + between(rng, MINUTE, 25 * MINUTE, k)
        elif case == "active_fresh":
            started[idx], status[idx] = now - between(rng, MINUTE, 25 * MINUTE, k), "active"
        elif case == "active_abandoned":
            started[idx], status[idx] = now - between(rng, 31 * MINUTE, 3 * DAY, k), "active"
        else:
            started[idx], status[idx] = now - between(rng, HOUR, 60 * DAY, k), "expired"
            ended[idx] = started[idx] + 30 * MINUTE
    # per game type: a completed game yesterday, one last (Monday-start) week, one past 90 days
    last_monday = ctx.today - ((ctx.today // DAY + 3) % 7) * DAY - 7 * DAY
    pinned_starts = (ctx.today - DAY + 12 * HOUR, last_monday + 2 * DAY + 15 * HOUR, now - 120 * DAY)
    completed = np.flatnonzero(status == "completed")
    for slot, row in enumerate(completed[: len(GAME_TYPES) * len(pinned_starts)]):
        game[row] = slot % len(GAME_TYPES)
        started[row] = pinned_starts[slot // len(GAME_TYPES)] + slot * MINUTE
        ended[row] = started[row] + 10 * MINUTE
    order = np.argsort(started, kind="stable")
    game, started, ended, status = game[order], started[order], ended[order], status[order]
    player = rng.integers(0, len(players), n)
    session_ids = ids(n)

    # one leaderboard entry per completed game; ~3% of those sessions were deleted since
    done = np.flatnonzero(status == "completed")
    scale = np.array([GAME_SCORE_SCALE[g] for g in GAME_TYPES], dtype=float)[game[done]]
    score = (rng.gamma(2.0, 0.5, len(done)) * scale).astype(np.int64)
    deleted = np.zeros(n, dtype=bool)
    deleted[done[rng.random(len(done)) < 0.03]] = True
    if len(done) > 1:
        deleted[done[-1]] = True  # at least one orphaned entry, recent enough to be seen
    entry_order = np.argsort(ended[done], kind="stable")
    entry_rows = done[entry_order]
    entry_created = ended[entry_rows]
    types = np.array(GAME_TYPES, dtype=object)
    players_arr = np.array(players, dtype=object)
    entries = Frame("leaderboard_entries", {
        "id": ids(len(entry_rows)),
        "session_id": session_ids[entry_rows],
        "game_type": types[game[entry_rows]],
        "player_address": players_arr[player[entry_rows]],
        "score": score[entry_order],
        "created_at": ts(entry_created),
    })
    kept = ~deleted
    sessions_frame = Frame("game_sessions", {
        "id": session_ids[kept],
        "game_type": types[game[kept]],
        "player_address": players_arr[player[kept]],
        "status": status[kept],
        "started_at": ts(started[kept]),
        "ended_at": ts(ended[kept]),
    })
    pools = _prize_pools(ctx, rng, game[entry_rows], entry_created, score[entry_order], players_arr[player[entry_rows]])
    return [sessions_frame, entries, pools]


def _prize_pools(ctx: Context, rng, game, created, score, player) -> Frame:
    """Finalized pools for past periods, open pools for the latest past periods and today."""
    today = ctx.today
    this_monday = today - ((today // DAY + 3) % 7) * DAY
    periods = [("daily", today - d * DAY, DAY, d >= 3) for d in range(14)]
    periods += [("weekly", this_monday - w * 7 * DAY, 7 * DAY, w >= 2) for w in range(6)]
    rows = []
    for code, game_type in enumerate(GAME_TYPES):
        of_game = game == code
        for period, start, length, finalized in periods:
            in_period = of_game & (created >= start) & (created < start + length)
            entries = int(in_period.sum())
            amount = round(entries * 0.25 + float(rng.uniform(0, 5)), 2)
            if not finalized:
                rows.append((game_type, period, start, amount, "open", None, NULL_TS, NULL_TS))
            elif entries == 0:
                rows.append((game_type, period, start, amount, "no_winner", None, NULL_TS, start + length + 5 * MINUTE))
            else:
                best = np.flatnonzero(in_period)[np.argmax(score[in_period])]
                rows.append((game_type, period, start, amount, "finalized", player[best], int(score[best]),
                             start + length + 5 * MINUTE))
    game_type, period, start, amount, status, winner, winning, finalized_at = zip(*rows)
    winning = np.array(winning, dtype=np.int64)
    return Frame("prize_pools", {
        "id": ids(len(rows)),
        "game_type": list(game_type),
        "period": list(period),
        "period_start": (np.array(start, dtype=np.int64) // DAY).astype("datetime64[D]"),
        "total_amount": np.array(amount, dtype=float),
        "status": list(status),
        "winner_address": list(winner),
        "winning_score": nullable(np.where(winning == NULL_TS, 0, winning), winning == NULL_TS),
        "finalized_at": ts(np.array(finalized_at, dtype=np.int64)),
    })


# --- learning ------------------------------------------------------------------------------
COURSE_SUBJECTS = ("Python", "Data Analysis", "Web Design", "Photography", "Spanish", "Guitar", "Statistics",
                   "Machine Learning", "Marketing", "Video Editing", "Public Speaking", "SQL")
COURSE_LEVELS = ("Introduction to", "Practical", "Advanced", "Foundations of", "Mastering")
LEARNING_KINDS = {"lesson_started": 0.3, "lesson_completed": 0.35, "quiz_submitted": 0.15, "video_watched": 0.2}
LEARNING_WINDOW = 40 * DAY


def learning(ctx: Context) -> list[Frame]:
    rng = ctx.rng("learning")
    now = ctx.now
    course_n = ctx.size("courses")
    names = [f"{level} {subject}" for subject in COURSE_SUBJECTS for level in COURSE_LEVELS]
    titles = [names[i % len(names)] + (f" ({i // len(names) + 1})" if i >= len(names) else "") for i in range(course_n)]

    # enrollments: a (user, course) pair at most once; ~30% completed
    wanted = ctx.size("enrollments")
    enrolled = ctx.now - between(rng, HOUR, 120 * DAY, wanted)
    user = ctx.users_before(rng, enrolled)
    popularity = rng.lognormal(0, 1, course_n)
    course = rng.choice(course_n, wanted, p=popularity / popularity.sum()) + 1
    _, first = np.unique(user * (course_n + 1) + course, return_index=True)
    first.sort()
    enrolled, user, course = enrolled[first], user[first], course[first]
    n = len(first)
    finished = enrolled + between(rng, 3 * DAY, 60 * DAY, n)
    completed = np.where((rng.random(n) < 0.3) & (finished < now), finished, NULL_TS)
    # a few who enrolled three weeks ago and finished yesterday, so yesterday has completions
    yesterday = ctx.today - DAY
    pinned = np.zeros(n, dtype=bool)
    for i in range(min(n, 3)):
        enrolled[i], completed[i], pinned[i] = yesterday - 20 * DAY, yesterday + (9 + i) * HOUR, True
    order = np.argsort(enrolled, kind="stable")
    enrolled, user, course, completed, pinned = (a[order] for a in (enrolled, user, course, completed, pinned))
    enrollment_frame = Frame("enrollments", {
        "id": ids(n), "course_id": course.astype(np.int64), "user_id": user,
        "enrolled_at": ts(enrolled), "completed_at": ts(completed),
    })
    return [Frame("courses", {"id": ids(course_n), "title": titles}), enrollment_frame,
            _learning_events(ctx, rng, enrolled, user, course, completed, np.flatnonzero(pinned))]


def _learning_events(ctx: Context, rng, enrolled, user, course, completed, pinned) -> Frame:
    """course_started / course_completed at their moments, activity in between, over the
    last 40 days (including yesterday), so daily, weekly and monthly analytics have data."""
    now = ctx.now
    window_start = now - LEARNING_WINDOW
    finish = np.where(completed == NULL_TS, now, completed)
    active = np.flatnonzero(finish > window_start)
    started_in_window = np.flatnonzero(enrolled >= window_start)
    completed_in_window = np.flatnonzero((completed != NULL_TS) & (completed >= window_start))
    activity_n = max(0, ctx.size("learning_events") - len(started_in_window) - len(completed_in_window))
    pick_rows = active[rng.integers(0, len(active), activity_n)] if len(active) else np.array([], dtype=np.int64)
    low = np.maximum(enrolled[pick_rows], window_start)
    moments = between(rng, low, finish[pick_rows])
    codes = pick(rng, len(pick_rows), LEARNING_KINDS)[rng.permutation(len(pick_rows))]
    kinds = np.array(list(LEARNING_KINDS), dtype=object)[codes]
    # pinned: the enrollments finishing yesterday also completed a lesson and a quiz that morning
    pinned_at = ctx.today - DAY + 8 * HOUR + np.arange(len(pinned)) * HOUR
    rows = np.r_[started_in_window, completed_in_window, pick_rows, pinned, pinned]
    created = np.r_[enrolled[started_in_window], completed[completed_in_window], moments, pinned_at, pinned_at + 30 * MINUTE]
    kind = np.r_[
        np.full(len(started_in_window), "course_started", dtype=object),
        np.full(len(completed_in_window), "course_completed", dtype=object),
        kinds,
        np.full(len(pinned), "lesson_completed", dtype=object),
        np.full(len(pinned), "quiz_submitted", dtype=object),
    ]
    order = np.argsort(created, kind="stable")
    rows, created, kind = rows[order], created[order], kind[order]
    quiz = kind == "quiz_submitted"
    score = np.where(quiz, rng.normal(74, 14, len(rows)).clip(0, 100).round(1), np.nan)
    return Frame("learning_events", {
        "id": ids(len(rows)),
        "user_id": user[rows],
        "course_id": course[rows].astype(np.int64),
        "kind": kind,
        "score": score,
        "created_at": ts(created),
    })


# --- files and security --------------------------------------------------------------
FILE_EXTENSIONS = ("jpg", "png", "webp", "pdf", "mp4", "mov")


def stored_files(ctx: Context) -> list[Frame]:
    rng = ctx.rng("stored_files")
    n = ctx.size("stored_files")
    created = np.sort(ctx.now - between(rng, MINUTE, 365 * DAY, n))
    owner = ctx.users_before(rng, created)
    months = np.datetime_as_string(ts(created).astype("datetime64[M]")).tolist()  # 'YYYY-MM'
    names = hex_tokens(rng, n, 16)
    ext = rng.integers(0, len(FILE_EXTENSIONS), n).tolist()
    keys = [f"uploads/{o}/{m[:4]}/{m[5:]}/{name}.{FILE_EXTENSIONS[e]}"
            for o, m, name, e in zip(owner.tolist(), months, names, ext)]
    return [Frame("stored_files", {"id": ids(n), "s3_key": keys, "owner_id": owner, "created_at": ts(created)})]


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
    provider_ips = [f"10.{p}.{i // 250}.{i % 250 + 1}" for p in range(len(WEBHOOK_PROVIDERS)) for i in range(20)]
    provider = rng.integers(0, len(WEBHOOK_PROVIDERS), normal)
    received = now - between(rng, 10, 7 * DAY, normal)
    received[: min(normal, 10)] = now - between(rng, 10, 14 * MINUTE, min(normal, 10))  # some inside the window
    parts = {
        "provider": [np.array(WEBHOOK_PROVIDERS, dtype=object)[provider]],
        "source_ip": [np.array(provider_ips, dtype=object)[provider * 20 + rng.integers(0, 20, normal)]],
        "event_id": [np.array(["evt_" + t for t in hex_tokens(rng, normal, 24)], dtype=object)],
        "signature_valid": [rng.random(normal) > 0.01],
        "received_at": [received],
    }

    def add(k, provider_name, ip, valid, low, high, event_ids=None):
        parts["provider"].append(np.full(k, provider_name, dtype=object))
        parts["source_ip"].append(np.full(k, ip, dtype=object))
        parts["event_id"].append(np.array(event_ids or ["evt_" + t for t in hex_tokens(rng, k, 24)], dtype=object))
        parts["signature_valid"].append(np.full(k, valid))
        parts["received_at"].append(now - between(rng, low, high, k))

    add(30, "stripe", INVALID_SIGNATURE_IP, False, MINUTE, 8 * MINUTE)
    add(200, "paypal", BURST_IP, True, MINUTE, 5 * MINUTE)
    add(3, "stripe", provider_ips[0], True, 2 * MINUTE, 9 * MINUTE, ["evt_replayed_" + hex_tokens(rng, 1, 16)[0]] * 3)
    add(30, "payplus", OLD_ATTACK_IP, False, 2 * DAY, 2 * DAY + HOUR)
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    columns = sort_by(columns["received_at"], columns)
    total = len(columns["received_at"])
    return [Frame("webhook_events", {
        "id": ids(total),
        "provider": columns["provider"],
        "source_ip": columns["source_ip"],
        "event_id": columns["event_id"],
        "signature_valid": columns["signature_valid"].astype(bool),
        "received_at": ts(columns["received_at"]),
    })]


REALTIME_EVENTS = (
    ("throne:expired", lambda i: f"stream:{i % 50 + 1}", lambda i: {"throne_id": i, "stream_id": i % 50 + 1}),
    ("festival:activated", lambda i: "global", lambda i: {"festival_id": 1, "theme": "lunar"}),
    ("festival:ended", lambda i: "global", lambda i: {"festival_id": 2, "theme": "halloween"}),
    ("bonus:credited", lambda i: f"user:{i % 97 + 1}", lambda i: {"user_id": i % 97 + 1, "amount": 60}),
)


def realtime_events(ctx: Context) -> list[Frame]:
    """The outbox: mostly published, the newest few not yet (the publisher's work)."""
    rng = ctx.rng("realtime_events")
    n = ctx.size("realtime_events")
    created = ctx.now - between(rng, 10, 3 * DAY, n)
    created[-min(n, 3):] = ctx.now - np.arange(min(n, 3), 0, -1) * 30
    created.sort()
    unpublished = (rng.random(n) < 0.1) & (created > ctx.now - HOUR)
    unpublished[-min(n, 3):] = True
    published = np.where(unpublished, NULL_TS, created + between(rng, 0, 3, n))
    kind = rng.integers(0, len(REALTIME_EVENTS), n).tolist()
    rows = [(REALTIME_EVENTS[k][0], REALTIME_EVENTS[k][1](i), json.dumps(REALTIME_EVENTS[k][2](i)))
            for i, k in enumerate(kind, start=1)]
    event, channel, payload = zip(*rows)
    return [Frame("realtime_events", {
        "id": ids(n), "channel": list(channel), "event": list(event), "payload": list(payload),
        "created_at": ts(created), "published_at": ts(published),
    })]


def security_alerts(ctx: Context) -> list[Frame]:
    return [Frame("security_alerts", {})]  # empty: the monitor writes it


# In dependency order: users first (others pick users who had signed up by then), streams
# before their events, rankings and thrones.
GENERATORS = (
    users, og_tiers, sessions, tokens, secrets, coin_transactions, payments, projects,
    notifications, realtime_events, streams, stream_events, stream_rankings, reputation_events,
    thrones, festivals, games, learning, stored_files, webhook_events, security_alerts,
)
