"""The rule of `og_daily_bonus`, the daily bonus of active OG subscribers.

Partitions are days in Australia/Sydney. The schedule ticks at 00:05 Sydney time and, like
the seed, credits the Sydney day that has just started: the partitions definition has
`end_offset=1`, so the day in progress is the latest partition and the tick of day D asks
for partition D. Across daylight-saving changes a partition is the real local day (23 or
25 hours long); its UTC window comes from the partitions definition.

Rule, for the partition's day D:
- active OG user: `og_level > 0` and `og_expires_at > now`, `now` being the time of the run
  (00:05 Sydney for the scheduled one). A re-run or a late catch-up of D credits the users
  active when it runs who have no credit for D yet; nobody is ever credited twice for D.
  A day that has not begun in Sydney cannot be credited.
- tier: `og_tier_id`, or — when it is NULL — the tier of `og_level` (lowest id of that level).
  Users whose tier cannot be resolved, or whose tier has no positive price and duration or
  an absurd one (over 10^12 coins or 36,500 days: a malformed row), are skipped and counted.
- amount: `floor(price_coins * 0.6 / duration_days)`, computed in integers as
  `(price_coins * 6) / (duration_days * 10)` so both databases agree to the coin. A zero
  amount credits nothing.
- one `coin_transactions` row (kind `og_daily_bonus`, balance `bonus`, idempotency key
  `og_daily_bonus:<user_id>:<YYYY-MM-DD>`), the `bonus_balance` increase and one
  `bonus:credited` event on channel `user:<id>` in `realtime_events`, all in one transaction.

Exactly once: the unique idempotency key decides. Users are credited in batches of
ascending id, each batch one transaction that only adds to the balance what its own ledger
insert really inserted. A re-run, a concurrent run or a run resumed after a crash finds the
rows already there and credits nothing for them.
"""

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, text

from ops_platform.db.bad_rows import ABSURD_COINS, ABSURD_DAYS
from ops_platform.db.engine import is_postgres
from ops_platform.log_line import LogLine

SYDNEY = ZoneInfo("Australia/Sydney")
LEDGER_KIND = "og_daily_bonus"
EVENT_NAME = "bonus:credited"


class BonusInputError(ValueError):
    """The partition asked for cannot be credited (malformed, or a day not begun yet)."""


def sydney_day_window(day: str | date) -> tuple[date, datetime, datetime]:
    """The Sydney day `day` (YYYY-MM-DD) and its UTC window [start, end)."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise BonusInputError(
                f"og_daily_bonus: partition {day!r} is not a YYYY-MM-DD day"
            ) from None
    start = datetime(day.year, day.month, day.day, tzinfo=SYDNEY)
    end = datetime.combine(
        date.fromordinal(day.toordinal() + 1), datetime.min.time(), tzinfo=SYDNEY
    )
    return day, start.astimezone(UTC), end.astimezone(UTC)


def idempotency_key(user_id: int, day: str | date) -> str:
    return f"{LEDGER_KIND}:{user_id}:{day}"


# The run's candidates: OG users not expired at `:now`, in id order, read once (one range
# scan of the OG index). Batches are slices of this list and read their users by primary key,
# so no batch rescans the OG index whatever the planner estimates.
_CANDIDATES = "SELECT id FROM users WHERE og_level > 0 AND og_expires_at > :now ORDER BY id"

# Active OG users (at `:now`) with a usable tier, and their amount; `{users}` is the users
# table, or the batch's slice of it.
# A tier the rule pays from: a positive price and duration, neither absurd (a typing or unit
# error, counted in `bad_rows`): the users of any other tier are skipped and counted.
USABLE_TIER = (
    f"(t.duration_days > 0 AND t.price_coins > 0 AND t.duration_days <= {ABSURD_DAYS} "
    f"AND t.price_coins <= {ABSURD_COINS})"
)
ELIGIBLE_FROM = f"""
    FROM {{users}} u
    LEFT JOIN (SELECT level, MIN(id) AS id FROM og_tiers GROUP BY level) level_tier
           ON level_tier.level = u.og_level
    JOIN og_tiers t ON t.id = COALESCE(u.og_tier_id, level_tier.id)
    WHERE u.og_level > 0
      AND u.og_expires_at > :now
      AND {USABLE_TIER}
"""
AMOUNT = "(t.price_coins * 6) / (t.duration_days * 10)"

KEY_SQL = "'og_daily_bonus:' || {user_id} || ':' || CAST(:day AS VARCHAR(10))"

_POSTGRES_BATCH = f"""
WITH candidate AS MATERIALIZED (
    -- the id range lets the planner read the batch's stretch of the primary key, not the table
    SELECT id, og_level, og_tier_id, og_expires_at FROM users
    WHERE id BETWEEN :first_id AND :last_id AND id = ANY(CAST(:ids AS bigint[]))
),
batch AS (
    SELECT u.id AS user_id, {AMOUNT} AS amount
    {ELIGIBLE_FROM.format(users="candidate")}
),
ledger AS (
    INSERT INTO coin_transactions (user_id, kind, amount, balance, idempotency_key, created_at)
    SELECT user_id, 'og_daily_bonus', amount, 'bonus', {KEY_SQL.format(user_id="user_id")}, :now
    FROM batch
    WHERE amount > 0
    ORDER BY user_id
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING user_id, amount
),
credited AS (
    UPDATE users SET bonus_balance = users.bonus_balance + ledger.amount
    FROM ledger
    WHERE users.id = ledger.user_id
    RETURNING users.id AS user_id, ledger.amount AS amount, users.bonus_balance AS bonus_balance
),
events AS (
    INSERT INTO realtime_events (channel, event, payload, created_at)
    SELECT 'user:' || user_id, 'bonus:credited',
           json_build_object('user_id', user_id, 'amount', amount, 'bonus_balance', bonus_balance,
                             'day', CAST(:day AS text), 'kind', 'og_daily_bonus'),
           :now
    FROM credited
)
SELECT (SELECT COUNT(*) FROM batch) AS scanned,
       (SELECT COUNT(*) FROM batch WHERE amount = 0) AS zero_amount,
       (SELECT COUNT(*) FROM ledger) AS ledger_rows,
       (SELECT COALESCE(SUM(amount), 0) FROM ledger) AS ledger_coins,
       (SELECT COUNT(*) FROM credited) AS credited_users,
       (SELECT COALESCE(SUM(amount), 0) FROM credited) AS balance_increase
"""

# SQLite has no data-modifying CTEs: the batch goes through a temp table, inside a
# BEGIN IMMEDIATE transaction (SQLite's single writer), so the "already credited" flag read
# at the start is still true when the ledger rows are inserted.
_SQLITE_BATCH = (
    "CREATE TEMP TABLE IF NOT EXISTS og_bonus_batch ("
    " user_id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, already INTEGER NOT NULL)",
    "DELETE FROM og_bonus_batch",
    f"""INSERT INTO og_bonus_batch (user_id, amount, already)
        SELECT u.id, {AMOUNT},
               EXISTS (SELECT 1 FROM coin_transactions c
                       WHERE c.idempotency_key = {KEY_SQL.format(user_id="u.id")})
        {ELIGIBLE_FROM.format(users="(SELECT * FROM users WHERE id IN (SELECT value FROM json_each(:ids)))")}""",
    # No ON CONFLICT: under the write lock a conflict would be a bug, and it must roll back.
    f"""INSERT INTO coin_transactions (user_id, kind, amount, balance, idempotency_key, created_at)
        SELECT user_id, 'og_daily_bonus', amount, 'bonus', {KEY_SQL.format(user_id="user_id")}, :now
        FROM og_bonus_batch WHERE already = 0 AND amount > 0 ORDER BY user_id""",
    """UPDATE users SET bonus_balance = users.bonus_balance + b.amount
       FROM og_bonus_batch b
       WHERE users.id = b.user_id AND b.already = 0 AND b.amount > 0""",
    """INSERT INTO realtime_events (channel, event, payload, created_at)
       SELECT 'user:' || b.user_id, 'bonus:credited',
              json_object('user_id', b.user_id, 'amount', b.amount, 'bonus_balance', u.bonus_balance,
                          'day', :day, 'kind', 'og_daily_bonus'),
              :now
       FROM og_bonus_batch b JOIN users u ON u.id = b.user_id
       WHERE b.already = 0 AND b.amount > 0""",
)
_SQLITE_BATCH_SUMMARY = """
    SELECT COUNT(*) AS scanned,
           COALESCE(SUM(CASE WHEN amount = 0 THEN 1 ELSE 0 END), 0) AS zero_amount,
           COALESCE(SUM(CASE WHEN already = 0 AND amount > 0 THEN 1 ELSE 0 END), 0) AS ledger_rows,
           COALESCE(SUM(CASE WHEN already = 0 AND amount > 0 THEN amount ELSE 0 END), 0) AS ledger_coins
    FROM og_bonus_batch
"""


@dataclass
class BonusResult:
    day: str
    window_start: datetime
    window_end: datetime
    batches: int = 0
    eligible_seen: int = 0  # active OG users with a usable tier, walked by this run
    credited_users: int = 0
    total_coins: int = 0  # sum of the ledger rows this run inserted
    balance_increase: int = 0  # sum this run added to bonus balances
    zero_amount: int = 0
    complete: bool = False  # False when stopped by max_batches
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0
    credited_per_batch: list[int] = field(default_factory=list)

    @property
    def already_credited(self) -> int:
        return self.eligible_seen - self.zero_amount - self.credited_users


@contextlib.contextmanager
def _sqlite_write_transaction(engine: Engine) -> Iterator[Connection]:
    """A SQLite transaction holding the write lock from its first statement."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.exec_driver_sql("ROLLBACK")
            raise
        connection.exec_driver_sql("COMMIT")


def _credit_batch_postgres(engine: Engine, params: dict) -> dict:
    with engine.begin() as connection:
        params = dict(params, ids=list(params["ids"]))
        row = connection.execute(text(_POSTGRES_BATCH), params).mappings().one()
        if (
            row["ledger_rows"] != row["credited_users"]
            or row["ledger_coins"] != row["balance_increase"]
        ):
            # A ledger row whose user is gone: refuse to leave ledger and balances apart.
            raise RuntimeError(
                f"og_daily_bonus {params['day']}: {row['ledger_rows']} ledger rows but "
                f"{row['credited_users']} balances changed in the batch from user {params['first_id']}; rolled back"
            )
        return dict(row)


def _credit_batch_sqlite(engine: Engine, params: dict) -> dict:
    params = dict(params, ids=json.dumps(list(params["ids"])))
    with _sqlite_write_transaction(engine) as connection:
        for statement in _SQLITE_BATCH[:3]:
            connection.execute(text(statement), params)
        row = dict(connection.execute(text(_SQLITE_BATCH_SUMMARY)).mappings().one())
        connection.execute(text(_SQLITE_BATCH[3]), params)
        changed = connection.execute(text(_SQLITE_BATCH[4]), params).rowcount
        connection.execute(text(_SQLITE_BATCH[5]), params)
        if changed != row["ledger_rows"]:
            raise RuntimeError(
                f"og_daily_bonus {params['day']}: {row['ledger_rows']} ledger rows but {changed} "
                f"balances changed in the batch from user {params['first_id']}; rolled back"
            )
        row.update(credited_users=changed, balance_increase=row["ledger_coins"])
        return row


def credit_og_daily_bonus(
    engine: Engine,
    day: str | date,
    *,
    now: datetime,
    batch_size: int = 20_000,
    max_batches: int | None = None,
    progress: LogLine | None = None,
) -> BonusResult:
    """Credit the OG daily bonus of Sydney day `day`, at most once per user, in batches of
    `batch_size` eligible users. `max_batches` stops early (a resumable partial run)."""
    day, start, end = sydney_day_window(day)
    if start > now:
        raise BonusInputError(
            f"og_daily_bonus: day {day} has not begun in Australia/Sydney (starts {start} UTC)"
        )
    if batch_size <= 0:
        raise BonusInputError(f"og_daily_bonus: batch_size must be > 0, got {batch_size}")
    result = BonusResult(day=day.isoformat(), window_start=start, window_end=end)
    credit_batch = _credit_batch_postgres if is_postgres(engine) else _credit_batch_sqlite
    started = time.perf_counter()
    with engine.connect() as connection:
        candidates = connection.execute(text(_CANDIDATES), {"now": now}).scalars().all()
    offsets = range(0, len(candidates), batch_size)
    for offset in offsets[:max_batches] if max_batches is not None else offsets:
        batch_started = time.perf_counter()
        ids = candidates[offset : offset + batch_size]
        row = credit_batch(
            engine,
            {
                "day": day.isoformat(),
                "now": now,
                "ids": ids,
                "first_id": ids[0],
                "last_id": ids[-1],
            },
        )
        result.batches += 1
        result.eligible_seen += row["scanned"]
        result.zero_amount += row["zero_amount"]
        result.credited_users += row["credited_users"]
        result.total_coins += int(row["ledger_coins"])
        result.balance_increase += int(row["balance_increase"])
        result.credited_per_batch.append(row["credited_users"])
        result.longest_batch_seconds = max(
            result.longest_batch_seconds, time.perf_counter() - batch_started
        )
        if progress:
            progress(
                f"og_daily_bonus {day}: batch {result.batches} (users {ids[0]}..{ids[-1]}): "
                f"{row['credited_users']} credited ({row['ledger_coins']} coins)"
            )
    result.complete = result.batches == len(offsets)
    result.seconds = time.perf_counter() - started
    return result
