"""Catch-up after a daemon outage: every missed partition of a partitioned scheduled asset is
requested exactly once, oldest first, never one materialized, in progress or not yet due."""

import json
from datetime import UTC, datetime

import dagster as dg
import pytest

from ops_platform.definitions import defs
from ops_platform.schedules import build
from ops_platform.schedules.build import (
    CATCHUP_MAX_REQUESTS_PER_TICK,
    catchup_partition_keys,
    is_time_partitioned,
)
from ops_platform.schedules.catalog import SCHEDULES, ScheduleRow, row_for
from ops_platform.settings import load_settings

UTC = UTC
GAMES = ("snake", "tetris", "pong", "breakout", "space_invaders")
REPO = defs.get_repository_def()


def _partitions_def(asset_name):
    return REPO.get_job(f"{asset_name}_job").partitions_def


def _due_keys(asset_name, now, **options):
    """The partitions of a catalogued asset the catch-up sensor finds due at `now`."""
    return catchup_partition_keys(_partitions_def(asset_name), row_for(asset_name), now, **options)


def _days(first: str, last: str) -> list[str]:
    start, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return [
        datetime.fromordinal(o).strftime("%Y-%m-%d")
        for o in range(start.toordinal(), end.toordinal() + 1)
    ]


# --- which partitions are due -----------------------------------------------------------------
def test_daily_pools_due_since_the_start_oldest_first():
    keys = _due_keys("daily_prize_pools", datetime(2026, 1, 10, 0, 30, tzinfo=UTC))
    assert keys == [f"{day}|{game}" for day in _days("2025-12-01", "2026-01-09") for game in GAMES]


def test_the_latest_tick_is_left_to_the_schedule_for_a_grace_period():
    keys = _due_keys("daily_prize_pools", datetime(2026, 1, 10, 0, 5, tzinfo=UTC))
    assert keys[-1] == "2026-01-08|space_invaders"


def test_lookback_is_bounded_to_a_year():
    keys = _due_keys("daily_prize_pools", datetime(2027, 6, 1, 0, 30, tzinfo=UTC))
    assert keys[0] == "2026-05-31|snake" and keys[-1] == "2027-05-31|space_invaders"
    assert len(keys) == 366 * 5


def test_weekly_pools_due_on_monday():
    keys = _due_keys("weekly_prize_pools", datetime(2026, 1, 12, 1, 0, tzinfo=UTC))
    weeks = ["2025-12-01", "2025-12-08", "2025-12-15", "2025-12-22", "2025-12-29", "2026-01-05"]
    assert keys == [f"{week}|{game}" for week in weeks for game in GAMES]
    # Sunday: the current week is not over, last week's is still due.
    keys = _due_keys("weekly_prize_pools", datetime(2026, 1, 11, 12, 0, tzinfo=UTC))
    assert keys[-1] == "2025-12-29|space_invaders"


def test_sydney_daily_and_monthly_partitions():
    sydney = dg.DailyPartitionsDefinition(start_date="2026-03-01", timezone="Australia/Sydney")
    row = ScheduleRow(
        "x", "x", "asset", "5 0 * * *", "high", "engagement", 60, timezone="Australia/Sydney"
    )
    # 2026-04-05 is the end of daylight saving in Sydney; 00:30 local on the 6th is 14:30 UTC on the 5th.
    keys = catchup_partition_keys(sydney, row, datetime(2026, 4, 5, 14, 30, tzinfo=UTC))
    assert keys[0] == "2026-03-01" and keys[-1] == "2026-04-05"
    monthly = dg.MonthlyPartitionsDefinition(start_date="2025-01-01")
    row = ScheduleRow("y", "y", "asset", "0 2 1 * *", "low", "analytics", 60)
    keys = catchup_partition_keys(monthly, row, datetime(2026, 3, 1, 3, 0, tzinfo=UTC))
    assert keys[0] == "2025-01-01" and keys[-1] == "2026-02-01" and len(keys) == 14
    keys = catchup_partition_keys(monthly, row, datetime(2026, 3, 1, 1, 0, tzinfo=UTC))
    assert keys[-1] == "2026-01-01"  # February's tick is at 02:00


def test_nothing_due_before_the_sensor_started_watching():
    now = datetime(2026, 1, 10, 0, 30, tzinfo=UTC)
    # Watching since the 8th at noon: the 8th's and 9th's pools became due after that.
    keys = _due_keys(
        "daily_prize_pools", now, watching_since=datetime(2026, 1, 8, 12, 0, tzinfo=UTC)
    )
    assert keys == [f"{day}|{game}" for day in ("2026-01-08", "2026-01-09") for game in GAMES]
    assert (
        _due_keys("daily_prize_pools", now, watching_since=datetime(2026, 1, 10, 0, 20, tzinfo=UTC))
        == []
    )


# --- the sensor on a test instance ------------------------------------------------------------
@pytest.fixture
def at_jan_10(monkeypatch):
    monkeypatch.setattr(build, "sensor_now", lambda: datetime(2026, 1, 10, 0, 30, tzinfo=UTC))


@pytest.fixture
def at_dec_8(monkeypatch):
    """A week after the pools' first day: 7 × 5 partitions due (a small instance to fill)."""
    monkeypatch.setattr(build, "sensor_now", lambda: datetime(2025, 12, 8, 0, 30, tzinfo=UTC))


# A sensor watching since before the pools' first day: every partition since then is its business.
WATCHING_SINCE_START = json.dumps({"watching_since": "2025-11-01T00:00:00+00:00"})


def _tick(instance, name="daily_prize_pools_catchup", cursor=WATCHING_SINCE_START):
    sensor = REPO.get_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, repository_def=REPO, cursor=cursor)
    return sensor.evaluate_tick(context)


def _materialized(instance, asset_name, keys):
    for key in keys:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=asset_name, partition=key)
        )


def test_missing_partitions_requested_oldest_first_materialized_ones_not(at_jan_10):
    with dg.DagsterInstance.ephemeral() as instance:
        done = [f"2025-12-01|{g}" for g in GAMES] + ["2025-12-02|snake", "2025-12-03|pong"]
        _materialized(instance, "daily_prize_pools", done)
        result = _tick(instance)
        keys = [str(r.partition_key) for r in result.run_requests]
        expected = [
            k
            for k in (f"{d}|{g}" for d in _days("2025-12-02", "2026-01-09") for g in GAMES)
            if k not in done
        ]
        assert keys == expected[:CATCHUP_MAX_REQUESTS_PER_TICK]
        assert keys[0] == "2025-12-02|tetris"
        assert [r.run_key for r in result.run_requests] == [f"daily_prize_pools:{k}" for k in keys]
        assert all(r.tags["ops/catchup"] == "true" for r in result.run_requests)
        # Stable: the same tick again asks for the same runs under the same keys.
        again = _tick(instance)
        assert [r.run_key for r in again.run_requests] == [r.run_key for r in result.run_requests]


def test_in_progress_partition_not_requested(at_dec_8):
    with dg.DagsterInstance.ephemeral() as instance:
        _materialized(
            instance,
            "daily_prize_pools",
            [f"{d}|{g}" for d in _days("2025-12-01", "2025-12-06") for g in GAMES],
        )
        job = REPO.get_job("daily_prize_pools_job")
        key = "2025-12-07|pong"
        # A run created (queued, not yet started) for one partition: its planned materialization
        # marks the partition in progress.
        instance.create_run_for_job(
            job_def=job,
            asset_selection=frozenset({dg.AssetKey("daily_prize_pools")}),
            tags=job.partitions_def.get_tags_for_partition_key(key),
        )
        keys = [str(r.partition_key) for r in _tick(instance).run_requests]
        assert keys == [f"2025-12-07|{g}" for g in GAMES if g != "pong"]


def test_every_missed_partition_exactly_once_across_ticks(at_dec_8):
    """The daemon's loop: each tick's runs materialize their partition before the next tick."""
    with dg.DagsterInstance.ephemeral() as instance:
        requested: list[str] = []
        ticks = 0
        while ticks < 10:
            ticks += 1
            result = _tick(instance)
            if not result.run_requests:
                assert "are materialized or in progress" in result.skip_message
                break
            batch = [str(r.partition_key) for r in result.run_requests]
            assert len(batch) <= CATCHUP_MAX_REQUESTS_PER_TICK
            requested += batch
            _materialized(instance, "daily_prize_pools", batch)
        assert requested == [f"{d}|{g}" for d in _days("2025-12-01", "2025-12-07") for g in GAMES]
        assert ticks == 3  # 25 + 10 requests, then nothing left


def test_go_live_catches_up_only_what_became_due_after_it(monkeypatch):
    with dg.DagsterInstance.ephemeral() as instance:
        monkeypatch.setattr(build, "sensor_now", lambda: datetime(2026, 1, 10, 9, 0, tzinfo=UTC))
        first = _tick(instance, cursor=None)
        assert not first.run_requests  # history before go-live is a backfill by hand
        assert json.loads(first.cursor) == {"watching_since": "2026-01-10T09:00:00+00:00"}
        # The daemon is down from the 10th to the 13th at 06:00: three days to catch up.
        monkeypatch.setattr(build, "sensor_now", lambda: datetime(2026, 1, 13, 6, 0, tzinfo=UTC))
        later = _tick(instance, cursor=first.cursor)
        assert [str(r.partition_key) for r in later.run_requests] == [
            f"{day}|{game}" for day in ("2026-01-10", "2026-01-11", "2026-01-12") for game in GAMES
        ]
        assert later.cursor == first.cursor


def test_nothing_requested_when_up_to_date(at_jan_10):
    with dg.DagsterInstance.ephemeral() as instance:
        _materialized(
            instance,
            "weekly_prize_pools",
            [
                f"{w}|{g}"
                for w in ("2025-12-01", "2025-12-08", "2025-12-15", "2025-12-22", "2025-12-29")
                for g in GAMES
            ],
        )
        result = _tick(instance, "weekly_prize_pools_catchup")
        assert not result.run_requests
        assert result.skip_message


# --- wiring -------------------------------------------------------------------------------------
def test_every_partitioned_scheduled_asset_has_a_catchup_sensor():
    sensors = {s.name: s for s in REPO.sensor_defs}
    partitioned = {
        row.target
        for row in SCHEDULES
        if row.kind == "asset"
        and row.cron
        and not row.waits_for_inputs
        and REPO.has_job(row.job_name)
        and is_time_partitioned(REPO.get_job(row.job_name).partitions_def)
    }
    assert {"daily_prize_pools", "weekly_prize_pools"} <= partitioned
    for asset in partitioned:
        assert sensors[f"{asset}_catchup"].job_name == f"{asset}_job"
    assert "stream_rankings_catchup" not in sensors
    # The reports wait for their inputs: their automation condition catches up, not a sensor.
    for report in ("weekly_trend_report", "monthly_executive_summary"):
        assert f"{report}_catchup" not in sensors
        assert isinstance(sensors[f"{report}_automation"], dg.AutomationConditionSensorDefinition)


def test_default_status_follows_the_group_switch():
    from ops_platform.definitions import build_definitions

    repo = build_definitions(load_settings({"OPS_ENABLE_GAMES": "false"})).get_repository_def()
    status = {s.name: s.default_status for s in repo.sensor_defs if s.name.endswith("_catchup")}
    assert status["daily_prize_pools_catchup"] == dg.DefaultSensorStatus.STOPPED
    assert status["weekly_prize_pools_catchup"] == dg.DefaultSensorStatus.STOPPED
    others = [name for name in status if "prize_pools" not in name]
    assert others and all(status[name] == dg.DefaultSensorStatus.RUNNING for name in others)
