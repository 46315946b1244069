"""Users, OG tiers, sessions, tokens, secrets and the coin ledger."""

from __future__ import annotations

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.seed_data._base import Context, cases, hex_tokens, ids, nullable, pick, sort_by
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, NULL_TS, between, null_ts, ts
from ops_platform.db.seed_data.names import EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES


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
    verified_at = np.where(
        verified,
        np.minimum(created + rng.exponential(2 * HOUR, n).astype(np.int64), ctx.now),
        NULL_TS,
    )
    is_og = og_level > 0
    og_expires = np.where(
        og_active,
        ctx.now + between(rng, HOUR, 30 * DAY, n),
        ctx.now - between(rng, HOUR, 60 * DAY, n),
    )
    columns = sort_by(
        created,
        {
            "created_at": created,
            "email_verified_at": verified_at,
            "trust_score": rng.normal(55, 15, n).clip(0, 100).round(1),
            "trust_score_updated_at": np.where(
                rng.random(n) < 0.7, ctx.now - between(rng, 0, 2 * HOUR, n), NULL_TS
            ),
            "coin_balance": (rng.lognormal(5, 1.5, n) * (rng.random(n) < 0.7)).astype(np.int64),
            "bonus_balance": np.where(is_og, rng.integers(0, 5_000, n), 0).astype(np.int64),
            "og_level": og_level.astype(np.int64),
            "og_expires_at": np.where(is_og, og_expires, NULL_TS),
        },
    )
    user_ids = ids(n)
    first = rng.integers(0, len(FIRST_NAMES), n).tolist()
    last = rng.integers(0, len(LAST_NAMES), n).tolist()
    domain = rng.integers(0, len(EMAIL_DOMAINS), n).tolist()
    emails = [
        f"{FIRST_NAMES[f]}.{LAST_NAMES[last_name]}{i}@{EMAIL_DOMAINS[d]}"
        for f, last_name, i, d in zip(first, last, user_ids.tolist(), domain)
    ]
    ctx.user_created = columns["created_at"]
    ctx.emails = emails
    ctx.unverified_ids = user_ids[columns["email_verified_at"] == NULL_TS]
    og_sorted = columns["og_level"] > 0
    ctx.og_ids = user_ids[og_sorted & (columns["og_expires_at"] > ctx.now)]
    frame = Frame(
        "users",
        {
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
        },
    )
    return [frame]


# (level, price in coins, duration in days): the daily bonus is floor(price * 0.6 / days)
OG_TIERS = ((1, 3_000, 30), (2, 9_000, 30), (3, 36_500, 365))


def og_tiers(ctx: Context) -> list[Frame]:
    levels, prices, days = (np.array(col, dtype=np.int64) for col in zip(*OG_TIERS))
    return [
        Frame(
            "og_tiers",
            {"id": levels, "level": levels, "price_coins": prices, "duration_days": days},
        )
    ]


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
# Revoked sessions: (age range, revoked-age range), inside the 7-day retention or past it.
REVOKED_AGES = {
    "revoked_recently": ((DAY, 25 * DAY), (MINUTE, 7 * DAY - HOUR)),
    "revoked_long_ago": ((8 * DAY, 29 * DAY), (7 * DAY + HOUR, 29 * DAY)),
}


def sessions(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("sessions")
    codes = pick(rng, n, SESSION_CASES)
    now = ctx.now
    created, last_seen, expires, revoked = (null_ts(n) for _ in range(4))
    for case, idx in cases(codes, SESSION_CASES):
        m = len(idx)
        if case == "live":
            c = now - between(rng, 10 * MINUTE, 20 * DAY, m)
            created[idx], last_seen[idx], expires[idx] = (
                c,
                between(rng, c, now),
                now + between(rng, HOUR, 30 * DAY, m),
            )
        elif case in ("expired_recently", "expired_long_ago"):
            e = now - (
                between(rng, MINUTE, DAY, m)
                if case == "expired_recently"
                else between(rng, DAY, 60 * DAY, m)
            )
            c = e - between(rng, DAY, 30 * DAY, m)
            created[idx], last_seen[idx], expires[idx] = c, between(rng, c, e), e
        elif case in REVOKED_AGES:
            (c_low, c_high), (r_low, r_high) = REVOKED_AGES[case]
            c_age = between(rng, c_low, c_high, m)
            r_age = between(rng, r_low, np.minimum(c_age, r_high))
            created[idx], revoked[idx] = now - c_age, now - r_age
            last_seen[idx] = now - r_age - MINUTE
            expires[idx] = now - c_age + 30 * DAY
        elif case == "idle":
            c_age = between(rng, 31 * DAY, 85 * DAY, m)
            created[idx], last_seen[idx] = now - c_age, now - between(rng, 31 * DAY, c_age)
            expires[idx] = now - c_age + 90 * DAY  # a long "remember me" session
        elif case in ("no_expiry", "player_active"):
            c_age = between(rng, HOUR, 60 * DAY, m)
            created[idx], last_seen[idx] = (
                now - c_age,
                now - between(rng, 0, np.minimum(c_age, 29 * DAY)),
            )
        elif case == "player_stale":
            c_age = between(rng, 31 * DAY, 120 * DAY, m)
            created[idx], last_seen[idx] = now - c_age, now - between(rng, 31 * DAY, c_age)
        elif case == "player_unseen":
            created[idx] = now - between(rng, HOUR, 90 * DAY, m)
    player = np.isin(codes, [i for i, c in enumerate(SESSION_CASES) if c.startswith("player")])
    anonymous = player & (rng.random(n) < 0.7)
    user_id = ctx.users_before(rng, created)
    columns = sort_by(
        created,
        {
            "user_id": user_id,
            "anonymous": anonymous,
            "player": player,
            "created_at": created,
            "last_seen_at": last_seen,
            "expires_at": expires,
            "revoked_at": revoked,
        },
    )
    return [
        Frame(
            "sessions",
            {
                "id": ids(n),
                "user_id": nullable(columns["user_id"], columns["anonymous"]),
                "kind": np.where(columns["player"], "player", "user").astype(object),
                "created_at": ts(columns["created_at"]),
                "last_seen_at": ts(columns["last_seen_at"]),
                "expires_at": ts(columns["expires_at"]),
                "revoked_at": ts(columns["revoked_at"]),
            },
        )
    ]


def _tokens(
    ctx: Context,
    table: str,
    lifetime: int,
    expired_ranges: dict[str, tuple[int, int]],
    user_pool: np.ndarray | None = None,
) -> Frame:
    """Tokens living `lifetime` seconds: live ones, and expired ones `expired_ranges` ago."""
    rng, n = ctx.draw(table)
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
        user_id = np.where(
            from_pool, user_pool[rng.integers(0, len(user_pool), n)], ctx.users_before(rng, created)
        )
    else:
        user_id = ctx.users_before(rng, created)
    return Frame(
        table,
        {
            "id": ids(n),
            "user_id": user_id,
            "token_hash": hex_tokens(rng, n, 64),
            "created_at": ts(created),
            "expires_at": ts(expires),
        },
    )


# table → (lifetime, expired cases as ranges of time since expiry)
TOKEN_PLANS = {
    # refresh tokens are kept 7 days past expiry
    "refresh_tokens": (
        30 * DAY,
        {
            "expired_inside_retention": (MINUTE, 7 * DAY - HOUR),
            "expired_past_retention": (7 * DAY + HOUR, 60 * DAY),
        },
    ),
    # verification links live a day; mostly for the accounts still unverified
    "email_verification_tokens": (
        DAY,
        {"expired_today": (MINUTE, 23 * HOUR), "expired_long_ago": (8 * DAY, 60 * DAY)},
    ),
    # reset links live an hour and are kept 24 h past expiry
    "password_reset_tokens": (
        HOUR,
        {
            "expired_inside_retention": (MINUTE, 23 * HOUR),
            "expired_past_retention": (25 * HOUR, 30 * DAY),
        },
    ),
}


def tokens(ctx: Context) -> list[Frame]:
    pools = {"email_verification_tokens": ctx.unverified_ids}
    return [
        _tokens(ctx, table, lifetime, expired_ranges, user_pool=pools.get(table))
        for table, (lifetime, expired_ranges) in TOKEN_PLANS.items()
    ]


# name → versions as (status, created days ago, expires in days (negative: past), retire_after in days)
SECRET_PLANS = {
    "jwt_signing_key": [("active", 20, 70, None)],
    "session_cookie_secret": [("active", 95, -5, None)],  # past expiry: due for rotation
    "webhook_signing_secret": [
        ("retired", 200, -110, -100),
        ("retiring", 110, -10, -2),
        ("active", 10, 80, None),
    ],
    "payments_api_key": [
        ("retiring", 92, -2, 5),
        ("active", 2, 88, None),
    ],  # inside its grace period
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
    retire = np.array(
        [NULL_TS if r is None else ctx.now + r * DAY for r in retire_after], dtype=np.int64
    )
    has_retire = retire != NULL_TS
    # a version stops being the active one when its successor is created
    rotated = np.array(
        [NULL_TS if s == "active" else int(created[i + 1]) for i, s in enumerate(status)],
        dtype=np.int64,
    )
    return [
        Frame(
            "secrets",
            {
                "id": ids(n),
                "name": list(name),
                "version": np.array(version, dtype=np.int64),
                "value_ciphertext": ["enc:v1:" + token for token in hex_tokens(rng, n, 96)],
                "status": list(status),
                "created_at": ts(created),
                "expires_at": ts(expires),
                "rotated_at": ts(rotated),
            },
        ),
        # the end of each retiring version's grace period, in the project's own table
        Frame(
            "secret_retirements",
            {"secret_id": ids(n)[has_retire], "retire_after": ts(retire[has_retire])},
        ),
    ]


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
    rng, n = ctx.draw("coin_transactions")
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
    return [
        Frame(
            "coin_transactions",
            {
                "id": row_ids,
                "user_id": user_id,
                "kind": kinds,
                "amount": amount,
                "balance": balance,
                # a prefix of its own, so the seed never collides with the jobs' keys; ascending
                # with the id, so the unique index grows at its right edge during the load
                "idempotency_key": [
                    f"seed:{i:010d}:{kind}" for kind, i in zip(kinds.tolist(), row_ids.tolist())
                ],
                "created_at": ts(created),
            },
        )
    ]
