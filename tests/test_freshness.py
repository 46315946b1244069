"""Freshness: every scheduled asset declares from its schedule-table row how fresh it must be;
the checks fail for an asset whose schedule stopped past its window and pass after a run."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_factories.freshness_checks import (
    last_update,
    time_partition,
)

from ops_platform.assets.analytics.hourly import hourly_platform_metrics
from ops_platform.assets.games import leaderboards
from ops_platform.definitions import build_definitions, defs
from ops_platform.schedules.catalog import SCHEDULES, row_for
from ops_platform.schedules.freshness import cron_period, deadline_cron, freshness_checks_for
from ops_platform.settings import load_settings

HOUR = "2026-11-23-04:00"  # due by 05:30 (hourly at :00, 30 min max runtime)


@pytest.mark.parametrize(
    "cron, delay, expected",
    [
        ("0 0 * * *", timedelta(hours=1), "0 1 * * *"),
        ("5 0 * * *", timedelta(hours=1), "5 1 * * *"),
        ("0 0 * * 1", timedelta(minutes=30), "30 0 * * 1"),
        ("0 * * * *", timedelta(minutes=30), "30 * * * *"),
        ("0 2 1 * *", timedelta(hours=2), "0 4 1 * *"),
        ("50 23 * * *", timedelta(minutes=5), "55 23 * * *"),
    ],
)
def test_the_deadline_is_the_cron_shifted_by_the_max_runtime(cron, delay, expected):
    assert deadline_cron(cron, delay) == expected


@pytest.mark.parametrize("cron", ["*/10 * * * *", "0 23 * * *", "45 * * * *"])
def test_a_deadline_that_cannot_be_derived_is_refused(cron):
    with pytest.raises(ValueError):
        deadline_cron(cron, timedelta(hours=1))


def test_cron_period():
    assert cron_period("*/10 * * * *") == timedelta(minutes=10)
    assert cron_period("0 0 * * 1") == timedelta(days=7)
    assert cron_period("0 2 1 * *") == timedelta(days=31)


def test_every_scheduled_asset_declares_its_freshness():
    check_keys = defs.resolve_asset_graph().asset_check_keys
    scheduled = {row.target for row in SCHEDULES if row.kind == "asset" and row.cron}
    assert scheduled
    for asset in scheduled:
        assert dg.AssetCheckKey(dg.AssetKey(asset), "freshness_check") in check_keys, asset


def test_freshness_and_automation_sensors_follow_the_group_switch():
    repo = build_definitions(load_settings({"OPS_ENABLE_ANALYTICS": "false"})).get_repository_def()
    status = {s.name: s.default_status for s in repo.sensor_defs}
    stopped, running = dg.DefaultSensorStatus.STOPPED, dg.DefaultSensorStatus.RUNNING
    assert status["analytics_freshness_sensor"] == stopped
    assert status["weekly_trend_report_automation"] == stopped
    assert status["monthly_executive_summary_automation"] == stopped
    assert status["games_freshness_sensor"] == running
    assert status["engagement_freshness_sensor"] == running
    on = defs.get_repository_def()
    assert on.get_sensor_def("weekly_trend_report_automation").default_status == running


def _run_checks(instance, asset, checks, resources):
    result = dg.materialize(
        [asset, *checks],
        selection=dg.AssetSelection.checks_for_assets(asset),
        instance=instance,
        resources=resources,
    )
    return {e.check_name: e for e in result.get_asset_check_evaluations()}["freshness_check"]


def test_time_partition_freshness_fails_past_the_window_and_passes_after_a_run(
    database, monkeypatch
):
    now = datetime(2026, 11, 23, 5, 40, tzinfo=UTC)
    monkeypatch.setattr(time_partition, "get_current_timestamp", now.timestamp)
    row = row_for("hourly_platform_metrics")
    checks = freshness_checks_for(row, hourly_platform_metrics)
    resources = {"database": database}
    with dg.instance_for_test() as instance:
        # The schedule ran until 03:00's hour, then stopped: 04:00's hour is past its deadline.
        dg.materialize(
            [hourly_platform_metrics],
            partition_key="2026-11-23-03:00",
            instance=instance,
            resources=resources,
        )
        overdue = _run_checks(instance, hourly_platform_metrics, checks, resources)
        assert not overdue.passed
        assert HOUR in overdue.description and "overdue" in overdue.description
        dg.materialize(
            [hourly_platform_metrics], partition_key=HOUR, instance=instance, resources=resources
        )
        assert _run_checks(instance, hourly_platform_metrics, checks, resources).passed


def test_last_update_freshness_fails_past_period_and_runtime_and_passes_after_a_run(
    database, monkeypatch
):
    row = row_for("leaderboards")  # hourly, 20 min max runtime: fresh for 80 min
    checks = freshness_checks_for(row, leaderboards)
    resources = {"database": database}
    with dg.instance_for_test() as instance:
        dg.materialize([leaderboards], instance=instance, resources=resources)
        ran = datetime.now(UTC)
        monkeypatch.setattr(
            last_update, "get_current_timestamp", (ran + timedelta(minutes=79)).timestamp
        )
        assert _run_checks(instance, leaderboards, checks, resources).passed
        monkeypatch.setattr(
            last_update, "get_current_timestamp", (ran + timedelta(minutes=95)).timestamp
        )
        assert not _run_checks(instance, leaderboards, checks, resources).passed
        monkeypatch.undo()
        dg.materialize([leaderboards], instance=instance, resources=resources)
        assert _run_checks(instance, leaderboards, checks, resources).passed
