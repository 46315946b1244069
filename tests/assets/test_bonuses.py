"""og_daily_bonus: exact amounts, who is credited, exactly once under re-runs, concurrent
runs and crashes, the ledger checks, and Sydney day boundaries across daylight saving."""

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from sqlalchemy import event, insert, text

from ops_platform.assets.bonuses import (
    OG_BONUS_PARTITIONS,
    BonusInputError,
    bonus_day_state,
    check_balances_cover_ledger,
    check_one_credit_per_user,
    credit_og_daily_bonus,
    og_daily_bonus,
    sydney_day_window,
)
from ops_platform.db import schema
from ops_platform.resources.database import Database
from ops_platform.schedules.build import build_schedules
from ops_platform.settings import load_settings

SYDNEY = ZoneInfo("Australia/Sydney")
UTC = UTC
DAY = "2026-04-05"  # daylight saving ends in Sydney that day: a 25-hour day
# Activity is judged at the time of the run; the fixture is built around the real clock so
# that materializations (which use it) and direct calls (given NOW) agree.
NOW = datetime.now(UTC).replace(microsecond=0)

# user id -> expected bonus balance after one credit of DAY
EXPECTED = {1: 100 + 20, 2: 257, 3: 5999, 9: 20}
UNTOUCHED = {4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 10: 0, 11: 0, 12: 50}


@pytest.fixture
def og_users(engine):
    later = NOW + timedelta(days=3)
    tiers = [
        {"id": 1, "level": 1, "price_coins": 1000, "duration_days": 30},  # 20.0   -> 20
        {"id": 2, "level": 2, "price_coins": 2999, "duration_days": 7},  # 257.05 -> 257
        {"id": 3, "level": 3, "price_coins": 5, "duration_days": 7},  # 0.43   -> 0
        {"id": 4, "level": 2, "price_coins": 9999, "duration_days": 1},  # 5999.4 -> 5999
        {"id": 5, "level": 4, "price_coins": 100, "duration_days": 0},  # bad tier
    ]

    def user(id, level, tier, expires, bonus=0):
        return {
            "id": id,
            "email": f"u{id}@example.com",
            "og_level": level,
            "og_tier_id": tier,
            "og_expires_at": expires,
            "bonus_balance": bonus,
        }

    users = [
        user(1, 1, 1, later, bonus=100),
        user(2, 2, None, later),  # no tier id: lowest tier of level 2
        user(3, 2, 4, later),
        user(4, 1, 1, NOW - timedelta(days=1)),  # expired
        user(5, 0, 1, later),  # not OG (level 0)
        user(6, 3, 3, later),  # amount rounds down to 0
        user(7, 4, 5, later),  # tier with 0 days: skipped
        user(8, 1, 1, NOW - timedelta(seconds=1)),  # expired a second ago
        user(9, 1, 1, NOW + timedelta(hours=1)),  # expires within the hour: still active
        user(10, 1, 99, later),  # unknown tier: skipped
        user(11, 1, 1, None),  # no expiry: not active
        user(12, 0, None, None, bonus=50),
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.og_tiers), tiers)
        connection.execute(insert(schema.users), users)
    return engine


def balances(engine) -> dict[int, int]:
    with engine.connect() as connection:
        return dict(
            connection.execute(text("SELECT id, bonus_balance FROM users ORDER BY id")).all()
        )


def ledger(engine) -> list[tuple]:
    with engine.connect() as connection:
        return [
            tuple(r)
            for r in connection.execute(
                text(
                    "SELECT user_id, kind, amount, balance, idempotency_key FROM coin_transactions ORDER BY user_id"
                )
            )
        ]


def events(engine) -> list[tuple]:
    with engine.connect() as connection:
        return [
            tuple(r)
            for r in connection.execute(
                text("SELECT channel, event FROM realtime_events ORDER BY id")
            )
        ]


def assert_credited_once(engine):
    assert balances(engine) == {**EXPECTED, **UNTOUCHED}
    assert ledger(engine) == [
        (
            user_id,
            "og_daily_bonus",
            EXPECTED[user_id] - (100 if user_id == 1 else 0),
            "bonus",
            f"og_daily_bonus:{user_id}:{DAY}",
        )
        for user_id in sorted(EXPECTED)
    ]
    assert sorted(events(engine)) == sorted((f"user:{u}", "bonus:credited") for u in EXPECTED)


def test_exact_amounts_and_only_active_og_users(og_users):
    result = credit_og_daily_bonus(og_users, DAY, now=NOW, batch_size=2)
    assert_credited_once(og_users)
    assert result.credited_users == 4
    assert result.total_coins == result.balance_increase == 20 + 257 + 5999 + 20
    assert result.zero_amount == 1 and result.complete
    assert result.batches == 4  # 7 OG users not expired (two with an unusable tier), 2 per batch


def test_bonus_event_payload(og_users):
    credit_og_daily_bonus(og_users, DAY, now=NOW)
    with og_users.connect() as connection:
        payload = (
            connection.execute(
                schema.realtime_events.select().where(schema.realtime_events.c.channel == "user:3")
            )
            .mappings()
            .one()["payload"]
        )
    assert payload == {
        "user_id": 3,
        "amount": 5999,
        "bonus_balance": 5999,
        "day": DAY,
        "kind": "og_daily_bonus",
    }


def test_second_run_credits_nothing_more(og_users):
    credit_og_daily_bonus(og_users, DAY, now=NOW, batch_size=3)
    again = credit_og_daily_bonus(og_users, DAY, now=NOW + timedelta(minutes=10), batch_size=2)
    assert again.credited_users == 0 and again.total_coins == 0
    assert again.already_credited == 4
    assert_credited_once(og_users)


def test_next_day_credits_again(og_users):
    credit_og_daily_bonus(og_users, DAY, now=NOW)
    credit_og_daily_bonus(og_users, "2026-04-06", now=datetime(2026, 4, 6, 0, 5, tzinfo=SYDNEY))
    after = balances(og_users)
    assert after[1] == 100 + 2 * 20 and after[3] == 2 * 5999


def test_concurrent_runs_credit_each_user_once(og_users):
    runs, errors = [], []
    barrier = threading.Barrier(4)

    def run():
        try:
            barrier.wait()
            runs.append(credit_og_daily_bonus(og_users, DAY, now=NOW, batch_size=1))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sum(r.credited_users for r in runs) == 4
    assert sum(r.total_coins for r in runs) == sum(r.balance_increase for r in runs)
    assert_credited_once(og_users)


def test_concurrent_materializations_credit_each_user_once(og_users, database):
    results = []

    def run():
        results.append(
            dg.materialize(
                [og_daily_bonus],
                partition_key=DAY,
                resources={"database": database},
                run_config={"ops": {"og_daily_bonus": {"config": {"batch_size": 1}}}},
            )
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2 and all(r.success for r in results)
    credited = [
        r.asset_materializations_for_node("og_daily_bonus")[0].metadata["credited"].value
        for r in results
    ]
    assert sum(credited) == 4
    assert_credited_once(og_users)


def test_crash_after_some_batches_then_full_run(og_users):
    partial = credit_og_daily_bonus(og_users, DAY, now=NOW, batch_size=2, max_batches=1)
    assert not partial.complete and partial.credited_users == 2
    assert balances(og_users)[1] == 120 and balances(og_users)[3] == 0
    rest = credit_og_daily_bonus(og_users, DAY, now=NOW, batch_size=2)
    assert rest.credited_users == 2
    assert_credited_once(og_users)


def test_crash_inside_a_batch_leaves_nothing_half_done(og_users):
    """A failure after the ledger rows, balance and event are written but before commit
    rolls the whole batch back: no ledger row without its balance change."""

    def crash(conn, cursor, statement, parameters, context, executemany):
        if "realtime_events" in statement:
            raise RuntimeError("process killed")

    event.listen(og_users, "after_cursor_execute", crash)
    try:
        with pytest.raises(Exception, match="process killed"):
            credit_og_daily_bonus(og_users, DAY, now=NOW)
    finally:
        event.remove(og_users, "after_cursor_execute", crash)
    assert ledger(og_users) == [] and events(og_users) == []
    assert balances(og_users) == {**{u: 0 for u in EXPECTED}, 1: 100, **UNTOUCHED}
    credit_og_daily_bonus(og_users, DAY, now=NOW)
    assert_credited_once(og_users)


def test_asset_metadata_checks_and_rerun(og_users, database):
    run_config = {"ops": {"og_daily_bonus": {"config": {"batch_size": 2}}}}
    first = dg.materialize(
        [og_daily_bonus], partition_key=DAY, resources={"database": database}, run_config=run_config
    )
    assert first.success
    metadata = first.asset_materializations_for_node("og_daily_bonus")[0].metadata
    assert metadata["credited"].value == 4
    assert metadata["total_coins"].value == metadata["balance_increase"].value == 6296
    assert metadata["skipped_bad_tier"].value == 2
    assert "5999" in metadata["preview"].value
    assert all(check.passed for check in first.get_asset_check_evaluations())
    assert_credited_once(og_users)

    second = dg.materialize(
        [og_daily_bonus], partition_key=DAY, resources={"database": database}, run_config=run_config
    )
    metadata = second.asset_materializations_for_node("og_daily_bonus")[0].metadata
    assert metadata["credited"].value == 0 and metadata["already_credited"].value == 4
    assert all(check.passed for check in second.get_asset_check_evaluations())
    assert_credited_once(og_users)


def test_dry_run_credits_nothing(og_users, database):
    result = dg.materialize(
        [og_daily_bonus],
        partition_key=DAY,
        resources={"database": database},
        run_config={"ops": {"og_daily_bonus": {"config": {"dry_run": True}}}},
    )
    metadata = result.asset_materializations_for_node("og_daily_bonus")[0].metadata
    assert metadata["would_credit_users"].value == 4
    assert metadata["would_credit_coins"].value == 6296
    assert ledger(og_users) == [] and balances(og_users)[3] == 0


@pytest.mark.parametrize(
    "corruption",
    [
        "UPDATE users SET bonus_balance = bonus_balance - 1 WHERE id = 3",  # a credit lost
        "UPDATE users SET bonus_balance = -5 WHERE id = 12",  # negative balance
    ],
)
def test_ledger_check_fails_on_corrupted_balance(og_users, corruption):
    credit_og_daily_bonus(og_users, DAY, now=NOW)
    assert check_balances_cover_ledger(og_users).passed
    with og_users.begin() as connection:
        connection.execute(text(corruption))
    assert not check_balances_cover_ledger(og_users).passed


def test_ledger_check_only_vouches_for_its_own_credits(og_users):
    """Bonus rows written by others (another key prefix, e.g. imported history) are not
    compared with the balance; this asset's credits are."""
    credit_og_daily_bonus(og_users, DAY, now=NOW)
    with og_users.begin() as connection:
        connection.execute(
            insert(schema.coin_transactions).values(
                user_id=12,
                kind="og_daily_bonus",
                amount=500,
                balance="bonus",
                idempotency_key="import:1",
            )
        )
    check = check_balances_cover_ledger(og_users)
    assert check.passed and check.metadata["credited_users_all_days"].value == 4


def test_one_credit_check_sees_a_missing_credit(og_users):
    result = credit_og_daily_bonus(og_users, DAY, now=NOW)
    assert check_one_credit_per_user(bonus_day_state(og_users, DAY, NOW), result).passed
    with og_users.begin() as connection:
        connection.execute(text("DELETE FROM coin_transactions WHERE user_id = 9"))
    check = check_one_credit_per_user(bonus_day_state(og_users, DAY, NOW))
    assert not check.passed and check.metadata["missing_credits"].value == 1


def test_corrupted_balance_fails_the_asset_check(og_users, database):
    credit_og_daily_bonus(og_users, DAY, now=NOW)
    with og_users.begin() as connection:
        connection.execute(text("UPDATE users SET bonus_balance = 0 WHERE id = 2"))
    result = dg.materialize(
        [og_daily_bonus], partition_key=DAY, resources={"database": database}, raise_on_error=False
    )
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"bonus_balances_cover_ledger": False, "one_credit_per_active_og_user": True}
    assert not result.success  # the check is blocking: the run fails (and is alerted)


def test_day_not_begun_and_malformed_day_are_clear_errors(engine):
    with pytest.raises(BonusInputError, match="has not begun"):
        credit_og_daily_bonus(engine, "2026-04-06", now=datetime(2026, 4, 5, 23, 59, tzinfo=SYDNEY))
    with pytest.raises(BonusInputError, match="not a YYYY-MM-DD"):
        credit_og_daily_bonus(engine, "5 April", now=NOW)


# --- Sydney days across daylight saving ---------------------------------------------------


@pytest.mark.parametrize(
    "day, start_utc, end_utc, hours",
    [
        (
            "2026-04-05",
            datetime(2026, 4, 4, 13, tzinfo=UTC),
            datetime(2026, 4, 5, 14, tzinfo=UTC),
            25,
        ),
        (
            "2026-10-04",
            datetime(2026, 10, 3, 14, tzinfo=UTC),
            datetime(2026, 10, 4, 13, tzinfo=UTC),
            23,
        ),
        (
            "2026-07-01",
            datetime(2026, 6, 30, 14, tzinfo=UTC),
            datetime(2026, 7, 1, 14, tzinfo=UTC),
            24,
        ),
    ],
)
def test_partition_utc_window_across_dst(day, start_utc, end_utc, hours):
    _, start, end = sydney_day_window(day)
    assert (start, end) == (start_utc, end_utc)
    window = OG_BONUS_PARTITIONS.time_window_for_partition_key(day)
    assert (window.start, window.end) == (start_utc, end_utc)
    assert end - start == timedelta(hours=hours)


@pytest.mark.parametrize(
    "tick, expected",
    [
        (datetime(2026, 4, 5, 0, 5, tzinfo=SYDNEY), "2026-04-05"),  # DST ends later that day
        (datetime(2026, 10, 4, 0, 5, tzinfo=SYDNEY), "2026-10-04"),  # DST starts later that day
        (datetime(2026, 4, 6, 0, 5, tzinfo=SYDNEY), "2026-04-06"),  # first tick after the change
        (datetime(2026, 10, 5, 0, 5, tzinfo=SYDNEY), "2026-10-05"),
    ],
)
def test_schedule_tick_credits_the_sydney_day_just_begun(tick, expected):
    jobs, schedules = build_schedules({}, {"og_daily_bonus": og_daily_bonus}, load_settings({}))
    defs = dg.Definitions(
        assets=[og_daily_bonus],
        jobs=jobs,
        schedules=schedules,
        resources={"database": Database(url="sqlite://")},
    )
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def("og_daily_bonus_daily")
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "5 0 * * *",
        "Australia/Sydney",
    )
    context = dg.build_schedule_context(scheduled_execution_time=tick, repository_def=repository)
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == expected


def test_expiry_exactly_at_run_time_is_not_active(engine):
    """`og_expires_at > now`: an OG membership ending at the instant of the run is over."""
    with engine.begin() as connection:
        connection.execute(
            insert(schema.og_tiers).values(id=1, level=1, price_coins=1000, duration_days=30)
        )
        connection.execute(
            insert(schema.users),
            [
                {"id": 1, "email": "a@x", "og_level": 1, "og_tier_id": 1, "og_expires_at": NOW},
                {
                    "id": 2,
                    "email": "b@x",
                    "og_level": 1,
                    "og_tier_id": 1,
                    "og_expires_at": NOW + timedelta(microseconds=1),
                },
            ],
        )
    result = credit_og_daily_bonus(engine, DAY, now=NOW)
    assert result.credited_users == 1 and balances(engine) == {1: 0, 2: 20}


def test_idempotency_key_is_the_sydney_day(og_users):
    """The tick at 00:05 Sydney on 2026-04-05 is still 2026-04-04 in UTC; the credit is
    keyed by the Sydney day of the partition."""
    tick = datetime(2026, 4, 5, 0, 5, tzinfo=SYDNEY)
    assert tick.astimezone(UTC).date().isoformat() == "2026-04-04"
    credit_og_daily_bonus(og_users, "2026-04-05", now=NOW)
    assert {key.rsplit(":", 1)[1] for *_, key in ledger(og_users)} == {"2026-04-05"}


def test_expired_users_are_not_credited(og_users):
    """Expired a day ago, a second ago, no expiry, or not OG at all: nothing."""
    credit_og_daily_bonus(og_users, DAY, now=NOW)
    after = balances(og_users)
    assert [after[u] for u in (4, 5, 8, 11)] == [0, 0, 0, 0] and after[9] == 20


def test_a_tier_with_an_absurd_price_pays_nobody(engine):
    """A price past any real one is a malformed tier (a typing or unit error): its users are
    skipped and counted, never paid 60 % of it."""
    later = NOW + timedelta(days=3)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.og_tiers),
            [
                {"id": 1, "level": 1, "price_coins": 1000, "duration_days": 30},
                {"id": 2, "level": 2, "price_coins": 10**13, "duration_days": 30},
            ],
        )
        connection.execute(
            insert(schema.users),
            [
                {
                    "id": i,
                    "email": f"u{i}@x",
                    "og_level": i,
                    "og_tier_id": i,
                    "og_expires_at": later,
                }
                for i in (1, 2)
            ],
        )
    result = credit_og_daily_bonus(engine, DAY, now=NOW)
    assert (result.credited_users, result.total_coins) == (1, 20)
    assert balances(engine) == {1: 20, 2: 0}
    assert bonus_day_state(engine, DAY, NOW).skipped_bad_tier == 1
