"""Freshness alerts: an asset whose schedule stopped past its window fails its freshness check
and `freshness_alert_sensor` mails one alert (a real SMTP server); after a run the check passes
and one recovery is mailed. A group in a maintenance window stays quiet. A weekly report
partition past its due time alerts once, naming the daily input partitions it waits for."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_factories.freshness_checks import (
    time_partition,
)

from ops_platform.assets.analytics.daily import daily_course_analytics, daily_student_analytics
from ops_platform.assets.analytics.hourly import hourly_platform_metrics
from ops_platform.assets.analytics.weekly import weekly_trend_report
from ops_platform.maintenance import end_windows, open_window
from ops_platform.resources.alerts import Alerts
from ops_platform.resources.database import Database
from ops_platform.schedules import overdue
from ops_platform.schedules.catalog import row_for
from ops_platform.schedules.freshness import freshness_checks_for
from ops_platform.sensors.freshness import freshness_alert_sensor
from tests.platform_env import platform_defs, platform_env
from tests.smtp_server import smtp_server

HOUR = "2026-11-23-04:00"  # due by 05:30 (hourly at :00, 30 min max runtime)
CHECKED_AT = datetime(2026, 11, 23, 5, 40, tzinfo=UTC)


@pytest.fixture
def setup(db_url, tmp_path, monkeypatch):
    """The real definitions and a Dagster instance on the test's app database, a real SMTP
    server behind the alerts, and the checks' clock at `CHECKED_AT`."""
    env = platform_env(monkeypatch, tmp_path, db_url)
    monkeypatch.setattr(time_partition, "get_current_timestamp", CHECKED_AT.timestamp)
    monkeypatch.setattr(overdue, "check_now", lambda: CHECKED_AT)
    database = Database(url=db_url)
    with smtp_server() as (smtp_url, handler):
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        alerts = Alerts(
            email_to="oncall@example.com",
            smtp_url=smtp_url,
            log_file=str(tmp_path / "alerts.log"),
        )
        yield {
            "instance": instance,
            "defs": platform_defs(),
            "resources": {"alerts": alerts, "database": database},
            "mail": handler,
            "database": database,
        }
        instance.dispose()
    database.engine.dispose()


def evaluate(setup, cursor):
    with dg.build_sensor_context(
        instance=setup["instance"],
        cursor=cursor,
        repository_def=setup["defs"].get_repository_def(),
        resources=setup["resources"],
    ) as context:
        result = freshness_alert_sensor(context)
        return context.cursor, result.skip_message


def materialize(setup, assets, **kwargs):
    result = dg.materialize(
        assets,
        instance=setup["instance"],
        resources={"database": setup["database"]},
        **kwargs,
    )
    assert result.success


def run_freshness_check(setup, asset):
    """What the group's freshness sensor launches: the asset's freshness check alone."""
    checks = freshness_checks_for(row_for(asset.key.to_user_string()), asset)
    result = dg.materialize(
        [asset, *checks],
        selection=dg.AssetSelection.checks_for_assets(asset),
        instance=setup["instance"],
        resources=setup["defs"].resources,  # the code location's, on the test's folders
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def subjects(setup) -> list[str]:
    return [message["Subject"] for message in setup["mail"].messages]


def test_overdue_asset_alerts_once_and_recovers_once(setup):
    # The schedule ran until 03:00's hour, then was stopped: 04:00's hour is past its deadline.
    materialize(setup, [hourly_platform_metrics], partition_key="2026-11-23-03:00")
    assert not run_freshness_check(setup, hourly_platform_metrics).passed

    cursor, skip = evaluate(setup, None)
    assert subjects(setup) == ["[WARNING] hourly_platform_metrics is overdue"]
    body = setup["mail"].messages[0].get_content()
    assert HOUR in body and "hourly_platform_metrics_hourly" in body
    assert "overdue: hourly_platform_metrics" in skip

    cursor, _ = evaluate(setup, cursor)  # the same incident: nothing more
    assert len(setup["mail"].messages) == 1

    # The hour is materialized (a run by hand, or the schedule back on): its run's checks pass.
    materialize(setup, [hourly_platform_metrics], partition_key=HOUR)
    assert run_freshness_check(setup, hourly_platform_metrics).passed
    cursor, skip = evaluate(setup, cursor)
    assert subjects(setup)[1:] == ["[INFO] hourly_platform_metrics is fresh again"]
    assert HOUR in setup["mail"].messages[1].get_content()
    assert skip == "overdue: none"
    evaluate(setup, cursor)
    assert len(setup["mail"].messages) == 2


def test_a_group_in_a_maintenance_window_stays_quiet(setup, monkeypatch):
    engine = setup["database"].engine
    open_window(
        engine,
        groups=["analytics"],
        reason="warehouse move",
        by="test",
        starts_at=CHECKED_AT - timedelta(hours=3),
        ends_at=CHECKED_AT + timedelta(hours=1),
        now=CHECKED_AT - timedelta(hours=3),
    )
    materialize(setup, [hourly_platform_metrics], partition_key="2026-11-23-03:00")
    assert not run_freshness_check(setup, hourly_platform_metrics).passed

    cursor, skip = evaluate(setup, None)
    assert setup["mail"].messages == []
    assert "quiet during a maintenance window: hourly_platform_metrics (window #" in skip

    # Resumed; the catch-up gets its time to run the hour, then the asset still overdue alerts.
    end_windows(engine, groups=None, by="test", now=CHECKED_AT)
    cursor, _ = evaluate(setup, cursor)
    assert setup["mail"].messages == []
    later = CHECKED_AT + timedelta(minutes=40)
    monkeypatch.setattr(overdue, "check_now", lambda: later)
    cursor, _ = evaluate(setup, cursor)
    assert subjects(setup) == ["[WARNING] hourly_platform_metrics is overdue"]


def test_a_weekly_report_past_its_due_time_names_the_inputs_it_waits_for(setup, monkeypatch):
    # Sunday 2026-11-29 02:10: the week from Sunday 2026-11-22 was due by 02:00. It reads the
    # days 2026-11-15 to 2026-11-28; the daily runs stopped after 2026-11-26.
    now = datetime(2026, 11, 29, 2, 10, tzinfo=UTC)
    monkeypatch.setattr(time_partition, "get_current_timestamp", now.timestamp)
    monkeypatch.setattr(overdue, "check_now", lambda: now)
    materialize(
        setup,
        [daily_course_analytics, daily_student_analytics],
        tags={
            "dagster/asset_partition_range_start": "2026-11-15",
            "dagster/asset_partition_range_end": "2026-11-26",
        },
    )
    evaluation = run_freshness_check(setup, weekly_trend_report)
    assert not evaluation.passed and "2026-11-22" in evaluation.description

    cursor, _ = evaluate(setup, None)
    assert subjects(setup) == ["[WARNING] weekly_trend_report is overdue"]
    body = setup["mail"].messages[0].get_content()
    assert "weekly_trend_report 2026-11-22 waits for its inputs" in body
    assert "daily_course_analytics missing: 2026-11-27, 2026-11-28" in body
    assert "daily_student_analytics missing: 2026-11-27, 2026-11-28" in body
    assert "2026-11-26" not in body

    evaluate(setup, cursor)
    assert len(setup["mail"].messages) == 1


def test_a_group_switched_off_is_not_judged_and_its_incident_closes(setup, monkeypatch):
    materialize(setup, [hourly_platform_metrics], partition_key="2026-11-23-03:00")
    assert not run_freshness_check(setup, hourly_platform_metrics).passed
    cursor, _ = evaluate(setup, None)
    assert subjects(setup) == ["[WARNING] hourly_platform_metrics is overdue"]

    # OPS_ENABLE_ANALYTICS=false: analytics_freshness_sensor is stopped, its checks unwatched.
    monkeypatch.setenv("OPS_ENABLE_ANALYTICS", "false")
    setup["defs"] = platform_defs()
    cursor, skip = evaluate(setup, cursor)
    assert subjects(setup)[1:] == ["[INFO] hourly_platform_metrics is no longer watched"]
    assert "freshness sensor was stopped" in setup["mail"].messages[1].get_content()
    assert skip == "overdue: none"
    evaluate(setup, cursor)
    assert len(setup["mail"].messages) == 2
