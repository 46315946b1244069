"""A maintenance window over a daily boundary, through the real daemon, end to end.

The stack of tests/e2e/_stack.py (Postgres instance, code server, daemon, webserver). A day
boundary cannot be waited for, so the window is opened with `--from` in the past: it covers
the last 00:05 Sydney tick of `og_daily_bonus` and the last 00:00 UTC tick of the daily
analytics. Their catch-up sensors have been watching since before the window (the cursor an
operator's long-running deployment has; set through GraphQL, as the UI's "set cursor" does),
so the partitions of those ticks are the ones that fell due inside the window.

Proved: while the window is active the catch-up sensors skip their ticks with the window's
reason and nothing runs; the daemon killed with SIGKILL and restarted in the middle of the
window still holds them; after `ops-platform resume` each missed partition is materialized
exactly once (one run per run key, one materialization per partition), every active OG user
is credited once for the missed day (ledger row and balance), and the daily analytics tables
hold the missed day's rows.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from sqlalchemy import insert, text

from ops_platform.db import schema
from ops_platform.db.engine import make_engine
from ops_platform.schedules.build import CATCHUP_GRACE
from tests.e2e._processes import BIN, REPO, wait_for
from tests.e2e._stack import Stack, running_stack

pytestmark = pytest.mark.e2e

BONUS = "og_daily_bonus"
ANALYTICS = ("daily_course_analytics", "daily_student_analytics")
ASSETS = (BONUS, *ANALYTICS)
SENSORS = tuple(f"{asset}_catchup" for asset in ASSETS)
REASON = "app DB migration 4.2"
SYDNEY = ZoneInfo("Australia/Sydney")
PAYMENT_SENSOR = "payment_status_check_sensor"

SET_SENSOR_CURSOR = """
mutation($selector: SensorSelector!, $cursor: String) {
  setSensorCursor(sensorSelector: $selector, cursor: $cursor) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""

# OG tiers (id, level, price_coins, duration_days) and users (id, level, tier, expires in days):
# the daily bonus is floor(price * 0.6 / duration).
TIERS = [(1, 1, 3000, 30), (2, 2, 10000, 7)]
OG_USERS = [(1, 1, 1, 30), (2, 1, 1, 5), (3, 2, 2, 10), (4, 1, 1, -1), (5, 0, None, None)]
DAILY_BONUS = {1: 60, 2: 60, 3: 857}  # user 4 expired, user 5 is not OG


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    logs = tmp_path_factory.mktemp("e2e_maintenance_logs")
    yield from running_stack(tmp_path_factory, "e2e_maintenance", {"OPS_LOG_DIR": str(logs)})


# --- time: the ticks the window covers -------------------------------------------------------
def last_tick(hour: int, minute: int, zone, before: datetime) -> datetime:
    """The newest daily tick at hour:minute local time in `zone` at or before `before`."""
    local = before.astimezone(zone)
    tick = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if tick > local:
        tick = (tick - timedelta(days=1)).replace(hour=hour, minute=minute)
    return tick.astimezone(UTC)


def due_partitions(asset: str, since: datetime, until: datetime) -> list[str]:
    """Partitions whose schedule tick falls in (since, until]: the bonus's tick of Sydney day D
    (00:05) credits D; the analytics' tick at 00:00 UTC of D computes D - 1."""
    keys, moment = [], until
    while True:
        if asset == BONUS:
            tick = last_tick(0, 5, SYDNEY, moment)
            key = tick.astimezone(SYDNEY).date().isoformat()
        else:
            tick = last_tick(0, 0, UTC, moment)
            key = (tick.date() - timedelta(days=1)).isoformat()
        if tick <= since:
            return sorted(keys)
        keys.append(key)
        moment = tick - timedelta(minutes=1)


# --- the app data ----------------------------------------------------------------------------
def app_engine(stack: Stack):
    return make_engine(stack.app_url)


def seed_app(stack: Stack, now: datetime, learning_day: datetime) -> None:
    engine = app_engine(stack)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.og_tiers),
            [dict(id=i, level=lv, price_coins=p, duration_days=d) for i, lv, p, d in TIERS],
        )
        connection.execute(
            insert(schema.users),
            [
                dict(
                    id=user_id,
                    email=f"og{user_id}@example.com",
                    created_at=now - timedelta(days=60),
                    og_level=level,
                    og_tier_id=tier,
                    og_expires_at=None if days is None else now + timedelta(days=days),
                    coin_balance=0,
                    bonus_balance=0,
                )
                for user_id, level, tier, days in OG_USERS
            ],
        )
        connection.execute(insert(schema.courses).values(id=1, title="SQL"))
        connection.execute(
            insert(schema.enrollments),
            [
                dict(id=1, course_id=1, user_id=1, enrolled_at=learning_day),
                dict(id=2, course_id=1, user_id=2, enrolled_at=learning_day),
            ],
        )
        connection.execute(
            insert(schema.learning_events),
            [
                dict(user_id=1, course_id=1, kind="lesson_completed", created_at=learning_day),
                dict(user_id=2, course_id=1, kind="quiz", score=80, created_at=learning_day),
            ],
        )
    engine.dispose()


def insert_payment(stack: Stack, now: datetime) -> None:
    """A payment created now: its first check is due 5 s later."""
    engine = app_engine(stack)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.payments).values(
                id=1,
                provider_ref="e2e-window",
                user_id=1,
                amount_cents=1500,
                currency="USD",
                status="pending",
                created_at=now,
                check_count=0,
            )
        )
    engine.dispose()


def payment_checks(stack: Stack) -> int:
    engine = app_engine(stack)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT check_count FROM payments WHERE id = 1")).scalar()
    engine.dispose()
    return count


def bonus_state(stack: Stack) -> tuple[dict[int, int], list[tuple]]:
    engine = app_engine(stack)
    with engine.connect() as connection:
        balances = dict(connection.execute(text("SELECT id, bonus_balance FROM users")).all())
        ledger = [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT user_id, amount, balance, idempotency_key FROM coin_transactions "
                    "WHERE kind = 'og_daily_bonus' ORDER BY idempotency_key"
                )
            )
        ]
    engine.dispose()
    return balances, ledger


def analytics_days(stack: Stack, table) -> Counter:
    engine = app_engine(stack)
    with engine.connect() as connection:
        days = Counter(
            str(day) for (day,) in connection.execute(table.select().with_only_columns(table.c.day))
        )
    engine.dispose()
    return days


# --- the instance ------------------------------------------------------------------------------
def set_cursor(stack: Stack, sensor: str, cursor: str) -> None:
    selector = {
        "repositoryLocationName": "ops_platform",
        "repositoryName": "__repository__",
        "sensorName": sensor,
    }
    result = stack.client._execute(SET_SENSOR_CURSOR, {"selector": selector, "cursor": cursor})
    assert result["setSensorCursor"]["__typename"] == "Sensor", result


def ticks_of(stack: Stack, sensor: str):
    return sorted(stack.ticks(InstigatorType.SENSOR, sensor), key=lambda t: t.timestamp)


def held_ticks(stack: Stack, sensor: str, after: float) -> list:
    return [
        tick
        for tick in ticks_of(stack, sensor)
        if tick.timestamp > after
        and tick.status == TickStatus.SKIPPED
        and REASON in (tick.skip_reason or "")
    ]


def asset_runs(stack: Stack, asset: str) -> list[dg.RunRecord]:
    return stack.runs(job_name=f"{asset}_job")


def materializations(stack: Stack, asset: str) -> Counter:
    records = stack.instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return Counter(record.partition_key for record in records)


def ops_platform(stack: Stack, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "python"), "-m", "ops_platform.cli", *args],
        env={**stack.env, "OPS_OPERATOR": "e2e"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- the check ---------------------------------------------------------------------------------
@pytest.mark.timeout(900)  # includes starting the stack
def test_a_window_over_a_daily_boundary_then_resume_catches_up_once(stack):
    started = time.monotonic()
    now = datetime.now(UTC)
    # The window starts before both ticks it must cover (the older of the two, minus 5 min),
    # and the catch-up sensors were watching before it opened.
    bonus_tick = last_tick(0, 5, SYDNEY, now - CATCHUP_GRACE)
    analytics_tick = last_tick(0, 0, UTC, now - CATCHUP_GRACE)
    window_start = min(bonus_tick, analytics_tick) - timedelta(minutes=5)
    watching_since = window_start - timedelta(minutes=1)
    learning_day = analytics_tick - timedelta(hours=12)  # inside the analytics' missed day
    seed_app(stack, now, learning_day)

    out = ops_platform(
        stack,
        "pause",
        "--all",
        "--reason",
        REASON,
        "--from",
        window_start.strftime("%Y-%m-%dT%H:%M"),
        "--until",
        (now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"),
    )
    assert "opened maintenance window #1 (all groups) by e2e" in out, out

    # Pending work of a fast sensor: a payment whose first check is due now (every 5 s).
    insert_payment(stack, now)
    stack.start_sensor(PAYMENT_SENSOR)
    # The catch-up sensors as a deployment running since before the window has them.
    for sensor in SENSORS:
        set_cursor(stack, sensor, json.dumps({"watching_since": watching_since.isoformat()}))
        stack.start_sensor(sensor)
    switched_on = time.time()
    wait_for(
        "a held tick of every sensor",
        lambda: all(held_ticks(stack, s, switched_on - 1) for s in (*SENSORS, PAYMENT_SENSOR)),
        180,
        interval_s=1,
        diagnostics=stack.diagnostics,
    )

    # The daemon crashes in the middle of the window and comes back: the window still holds.
    stack.kill_daemon()
    killed_at = time.time()
    stack.start_daemon()
    wait_for(
        "two held payment-check ticks after the restart",
        lambda: len(held_ticks(stack, PAYMENT_SENSOR, killed_at)) >= 2,
        120,
        interval_s=1,
        diagnostics=stack.diagnostics,
    )
    assert payment_checks(stack) == 0, "the payment was checked during the window"
    assert stack.runs() == [], "a run was launched during the window"

    resumed_at = time.time()
    assert "ended maintenance window #1" in ops_platform(stack, "resume")

    # Each catch-up sensor's next tick requests the partitions that fell due in the window.
    def requesting_tick(sensor):
        ticks = [t for t in ticks_of(stack, sensor) if t.timestamp > resumed_at and t.run_keys]
        return ticks[0] if ticks else None

    requesting = {
        sensor: wait_for(
            f"{sensor} to request the missed partitions",
            lambda sensor=sensor: requesting_tick(sensor),
            300,
            interval_s=2,
            diagnostics=stack.diagnostics,
        )
        for sensor in SENSORS
    }
    expected = {}
    for asset, sensor in zip(ASSETS, SENSORS, strict=True):
        tick_time = datetime.fromtimestamp(requesting[sensor].timestamp, UTC)
        expected[asset] = due_partitions(asset, watching_since, tick_time - CATCHUP_GRACE)
        assert expected[asset], f"no {asset} partition fell due inside the window"
        assert requesting[sensor].run_keys == [f"{asset}:{key}" for key in expected[asset]]

    # The catch-up's cursor survived the window and the crash: it still watches since before.
    for sensor in SENSORS:
        assert json.loads(stack.instigator_cursor(sensor)) == {
            "watching_since": watching_since.isoformat()
        }
    for asset in ASSETS:
        runs = wait_for(
            f"the {asset} catch-up runs",
            lambda asset=asset: (
                len(asset_runs(stack, asset)) >= len(expected[asset]) and asset_runs(stack, asset)
            ),
            120,
            interval_s=1,
            diagnostics=stack.diagnostics,
        )
        for run in runs:
            stack.wait_finished(run.dagster_run.run_id, 300)

    for asset in ASSETS:
        runs = asset_runs(stack, asset)
        keys = Counter(r.dagster_run.tags.get("dagster/run_key") for r in runs)
        assert keys == Counter(f"{asset}:{key}" for key in expected[asset]), keys
        assert all(r.dagster_run.tags.get("ops/catchup") == "true" for r in runs)
        assert materializations(stack, asset) == Counter(expected[asset])

    # Money: every active OG user credited once for each missed day, nobody else.
    balances, ledger = bonus_state(stack)
    days = expected[BONUS]
    assert balances == {
        user_id: DAILY_BONUS.get(user_id, 0) * len(days) for user_id, *_ in OG_USERS
    }
    assert ledger == sorted(
        (user_id, amount, "bonus", f"og_daily_bonus:{user_id}:{day}")
        for user_id, amount in DAILY_BONUS.items()
        for day in days
    )
    # The daily analytics hold the missed day's figures (one course, two students), once.
    learning_key = learning_day.date().isoformat()
    assert analytics_days(stack, schema.daily_course_analytics) == Counter({learning_key: 1})
    assert analytics_days(stack, schema.daily_student_analytics) == Counter({learning_key: 2})
    # Polled work resumes too: the payment held during the window is checked.
    wait_for("the payment's first check", lambda: payment_checks(stack) >= 1, 120, interval_s=1)
    print(f"window e2e took {time.monotonic() - started:.0f} s after the stack was up")
